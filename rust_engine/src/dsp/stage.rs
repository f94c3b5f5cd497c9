//! The streaming kernel contract ([`Stage`]), the closed set of fusable stages ([`StageKind`]),
//! and a stage with the name its errors carry ([`NamedStage`]).

use super::{
    check_block, check_rate, guarded, AutoGain, BlockRef, ChannelMix, Denoise, Gain, HighPass,
    NoiseSuppress, Output, Rebuffer, Resample, Result,
};

/// A streaming kernel. `process` is called with blocks that passed [`check_block`].
pub trait Stage {
    /// Puts zero or more output blocks in `out`.
    fn process(&mut self, input: BlockRef<'_>, sample_rate: u32, out: &mut Output) -> Result<()>;
    /// End of stream: puts any tail in `out`, then resets the stream state.
    fn flush(&mut self, out: &mut Output) -> Result<()>;
    /// Drops the stream state without emitting.
    fn reset(&mut self);
    /// The rate of the blocks emitted for blocks at `input_rate`.
    fn output_rate(&self, input_rate: u32) -> u32;
    /// The rate of the blocks emitted in the current stream, if one is under way (read before
    /// `flush` to know the rate of its tail).
    fn stream_output_rate(&self) -> Option<u32>;
}

/// Emits a copy of its input (the bindings return the input object itself and leave it out of
/// chains, so this runs only when `dsp` is used directly).
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough;

impl Stage for PassThrough {
    fn process(&mut self, input: BlockRef<'_>, _rate: u32, out: &mut Output) -> Result<()> {
        let copy = out.copy_of(input);
        out.push(copy);
        Ok(())
    }

    fn flush(&mut self, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    fn reset(&mut self) {}

    fn output_rate(&self, input_rate: u32) -> u32 {
        input_rate
    }

    fn stream_output_rate(&self) -> Option<u32> {
        None
    }
}

/// One of the [`StageKind`] variants' types, reachable from a `StageKind` by type.
pub trait StageVariant: Sized {
    fn of(kind: &StageKind) -> Option<&Self>;
    fn of_mut(kind: &mut StageKind) -> Option<&mut Self>;
}

/// Declares [`StageKind`] from its list of variants: the one place that lists them. Every method
/// reaches the stage through `as_stage`/`as_stage_mut`.
macro_rules! stage_kinds {
    ($($variant:ident),+ $(,)?) => {
        /// The fusable stages: a closed set, so a chain holds them without boxing.
        #[derive(Debug)]
        pub enum StageKind {
            $($variant($variant)),+
        }

        impl StageKind {
            /// The stage behind the variant.
            pub fn as_stage(&self) -> &dyn Stage {
                match self {
                    $(StageKind::$variant(s) => s),+
                }
            }

            /// The stage behind the variant, to run it.
            pub fn as_stage_mut(&mut self) -> &mut dyn Stage {
                match self {
                    $(StageKind::$variant(s) => s),+
                }
            }
        }

        $(
            impl From<$variant> for StageKind {
                fn from(stage: $variant) -> Self {
                    StageKind::$variant(stage)
                }
            }

            impl StageVariant for $variant {
                fn of(kind: &StageKind) -> Option<&Self> {
                    match kind {
                        StageKind::$variant(s) => Some(s),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    }
                }

                fn of_mut(kind: &mut StageKind) -> Option<&mut Self> {
                    match kind {
                        StageKind::$variant(s) => Some(s),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    }
                }
            }
        )+
    };
}

stage_kinds!(
    PassThrough,
    Gain,
    ChannelMix,
    Resample,
    Rebuffer,
    Denoise,
    HighPass,
    NoiseSuppress,
    AutoGain,
);

impl StageKind {
    pub fn is_pass_through(&self) -> bool {
        matches!(self, StageKind::PassThrough(_))
    }

    /// The variant holding a `S`, if this is one.
    pub fn get<S: StageVariant>(&self) -> Option<&S> {
        S::of(self)
    }

    /// The variant holding a `S`, if this is one.
    pub fn get_mut<S: StageVariant>(&mut self) -> Option<&mut S> {
        S::of_mut(self)
    }
}

impl Stage for StageKind {
    fn process(&mut self, input: BlockRef<'_>, sample_rate: u32, out: &mut Output) -> Result<()> {
        self.as_stage_mut().process(input, sample_rate, out)
    }

    fn flush(&mut self, out: &mut Output) -> Result<()> {
        self.as_stage_mut().flush(out)
    }

    fn reset(&mut self) {
        self.as_stage_mut().reset()
    }

    fn output_rate(&self, input_rate: u32) -> u32 {
        self.as_stage().output_rate(input_rate)
    }

    fn stream_output_rate(&self) -> Option<u32> {
        self.as_stage().stream_output_rate()
    }
}

/// A stage with the name its errors carry. Every call runs inside the panic guard: a panic is an
/// `Engine` error that drops the stream state.
#[derive(Debug)]
pub struct NamedStage {
    pub name: String,
    pub kind: StageKind,
}

impl NamedStage {
    pub fn new(name: impl Into<String>, kind: impl Into<StageKind>) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
        }
    }

    /// Runs `f` on the stage inside the panic guard; errors name the stage.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut StageKind) -> Result<T>) -> Result<T> {
        guarded(&mut self.kind, |kind| kind.reset(), f).map_err(|e| e.at(&self.name))
    }

    /// Checks `input` (checks 2 to 4), then runs the stage; errors (panics included) name the
    /// stage.
    pub fn process(
        &mut self,
        input: BlockRef<'_>,
        sample_rate: i64,
        out: &mut Output,
    ) -> Result<()> {
        check_block(input, sample_rate).map_err(|e| e.at(&self.name))?;
        self.run(input, sample_rate as u32, out) // checked above
    }

    /// Runs the stage on a block that passed [`check_block`] at `sample_rate` (checked at a
    /// chain's entry, or emitted by the stage before it).
    pub fn run(&mut self, input: BlockRef<'_>, sample_rate: u32, out: &mut Output) -> Result<()> {
        self.guarded(|kind| kind.process(input, sample_rate, out))
    }

    pub fn flush(&mut self, out: &mut Output) -> Result<()> {
        self.guarded(|kind| kind.flush(out))
    }

    pub fn reset(&mut self) -> Result<()> {
        self.guarded(|kind| {
            kind.reset();
            Ok(())
        })
    }

    pub fn output_rate(&self, input_rate: i64) -> Result<u32> {
        let rate = check_rate(input_rate).map_err(|e| e.at(&self.name))?;
        Ok(self.kind.output_rate(rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_stage_prefixes_errors() {
        let mut s = NamedStage::new("mix", ChannelMix::new(2).unwrap());
        let data = [0.0; 9];
        let e = s
            .process(BlockRef::new(3, 3, &data), 8000, &mut Output::new())
            .unwrap_err();
        assert!(
            e.to_string().starts_with("mix: cannot mix 3 channels to 2"),
            "{e}"
        );
        assert_eq!(
            s.output_rate(0).unwrap_err().to_string(),
            "mix: invalid sample rate 0"
        );
    }

    #[test]
    fn variants_are_reached_by_type() {
        let mut kind = StageKind::from(Gain::new(-6.0, 5.0).unwrap());
        assert!(kind.get::<Resample>().is_none() && !kind.is_pass_through());
        kind.get_mut::<Gain>().unwrap().set_gain_db(-3.0).unwrap();
        assert_eq!(kind.get::<Gain>().unwrap().gain_db(), -3.0);
        let mut pass = StageKind::from(PassThrough);
        let mut out = Output::new();
        pass.process(BlockRef::new(1, 2, &[1.0, 2.0]), 8000, &mut out)
            .unwrap();
        assert_eq!(
            (out[0].data.as_slice(), pass.output_rate(8000)),
            (&[1.0, 2.0][..], 8000)
        );
    }
}
