//! Planar audio blocks: borrowed (`BlockRef`, a kernel's input), owned (`Block`, what kernels
//! emit), and `Output`, where a stage puts the blocks it emits.

/// A borrowed planar block: `channels` rows of `frames` samples, row-major in `data`.
#[derive(Debug, Clone, Copy)]
pub struct BlockRef<'a> {
    pub channels: usize,
    pub frames: usize,
    pub data: &'a [f32],
}

impl<'a> BlockRef<'a> {
    /// Panics if `data.len() != channels * frames` (a bug in the caller, not bad input).
    pub fn new(channels: usize, frames: usize, data: &'a [f32]) -> Self {
        assert_eq!(
            data.len(),
            channels * frames,
            "block data does not match its shape"
        );
        Self {
            channels,
            frames,
            data,
        }
    }

    /// Samples of channel `c`.
    pub fn channel(&self, c: usize) -> &'a [f32] {
        &self.data[c * self.frames..(c + 1) * self.frames]
    }
}

/// An owned planar block, what kernels emit.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub channels: usize,
    pub frames: usize,
    pub data: Vec<f32>,
}

impl Block {
    pub fn new(channels: usize, frames: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            channels * frames,
            "block data does not match its shape"
        );
        Self {
            channels,
            frames,
            data,
        }
    }

    pub fn as_ref(&self) -> BlockRef<'_> {
        BlockRef {
            channels: self.channels,
            frames: self.frames,
            data: &self.data,
        }
    }
}

/// Most spare buffers an [`Output`] keeps: enough for the blocks of one call between two stages.
const MAX_SPARE: usize = 16;

/// Where a stage puts the blocks it emits, with spare buffers to build them in.
///
/// A chain hands back the buffers of the blocks it has passed on to the next stage
/// ([`Output::recycle`]), so a steady stream through a chain allocates only the blocks that leave
/// it. Derefs to the emitted blocks.
#[derive(Debug, Default)]
pub struct Output {
    blocks: Vec<Block>,
    spare: Vec<Vec<f32>>,
}

impl Output {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty buffer with room for `len` samples, a spare one if there is one.
    pub fn buffer(&mut self, len: usize) -> Vec<f32> {
        match self.spare.pop() {
            Some(mut buf) => {
                buf.clear();
                buf.reserve(len);
                buf
            }
            None => Vec::with_capacity(len),
        }
    }

    /// `len` zeros, in a spare buffer if there is one.
    pub fn zeros(&mut self, len: usize) -> Vec<f32> {
        let mut buf = self.buffer(len);
        buf.resize(len, 0.0);
        buf
    }

    /// A copy of `block`, in a spare buffer if there is one.
    pub fn copy_of(&mut self, block: BlockRef<'_>) -> Block {
        let mut buf = self.buffer(block.data.len());
        buf.extend_from_slice(block.data);
        Block::new(block.channels, block.frames, buf)
    }

    /// Takes the emitted blocks, keeping the spare buffers.
    pub fn take_blocks(&mut self) -> Vec<Block> {
        std::mem::take(&mut self.blocks)
    }

    /// The emitted blocks.
    pub fn into_blocks(self) -> Vec<Block> {
        self.blocks
    }

    /// Drops the emitted blocks, keeping their buffers as spares.
    pub fn recycle(&mut self) {
        let room = MAX_SPARE.saturating_sub(self.spare.len());
        self.spare
            .extend(self.blocks.drain(..).take(room).map(|b| b.data));
    }

    /// How many spare buffers are kept.
    #[cfg(test)]
    pub(crate) fn spares(&self) -> usize {
        self.spare.len()
    }

    /// Moves this output's spare buffers to `other`.
    pub fn lend_spares(&mut self, other: &mut Output) {
        other.spare.append(&mut self.spare);
        other.spare.truncate(MAX_SPARE);
    }
}

impl std::ops::Deref for Output {
    type Target = Vec<Block>;

    fn deref(&self) -> &Vec<Block> {
        &self.blocks
    }
}

impl std::ops::DerefMut for Output {
    fn deref_mut(&mut self) -> &mut Vec<Block> {
        &mut self.blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_buffers_are_reused() {
        let mut out = Output::new();
        let data = out.zeros(960);
        let at = data.as_ptr();
        out.push(Block::new(1, 960, data));
        out.recycle();
        assert!(out.is_empty());
        let mut other = Output::new();
        out.lend_spares(&mut other);
        let again = other.buffer(480);
        assert_eq!((again.as_ptr(), again.len()), (at, 0));
        let copy = other.copy_of(BlockRef::new(1, 2, &[1.0, 2.0]));
        assert_eq!(copy.data, [1.0, 2.0]);
    }

    #[test]
    fn spares_stay_bounded() {
        let mut out = Output::new();
        for _ in 0..3 * MAX_SPARE {
            out.push(Block::new(1, 1, vec![0.0]));
        }
        out.recycle();
        assert!(out.is_empty() && out.spare.len() == MAX_SPARE);
    }
}
