//! Pixel format conversion (`ColorConvertKernel`, `GrayscaleKernel`): BT.601, limited range for
//! YUV (Y 16..235, chroma 16..240, as ffmpeg's swscale assumes by default), full range for gray
//! (as swscale treats `gray`).
//!
//! Integer arithmetic in Q16 fixed point with the constants of `docs/stages-video.md`, so the
//! Python twin computes the same bytes. Chroma of a 4:2:0 target is the rounded mean of each
//! 2x2 block (centre-sited); a 4:2:0 source's chroma is repeated over its 2x2 block.

use super::{Picture, PictureRef, PixelFormat};
use crate::dsp::{EngineError, Result};

/// RGB -> Y (limited): `219/255 * (0.299, 0.587, 0.114)` in Q16.
const Y_R: i32 = 16829;
const Y_G: i32 = 33039;
const Y_B: i32 = 6416;
/// RGB -> Cb: `224/255 * (-0.299, -0.587, 0.886) / 1.772` in Q16, G adjusted so a grey has 128.
const U_R: i32 = -9714;
const U_G: i32 = -19070;
const U_B: i32 = 28784;
/// RGB -> Cr: `224/255 * (0.701, -0.587, -0.114) / 1.402` in Q16, G adjusted likewise.
const V_R: i32 = 28784;
const V_G: i32 = -24103;
const V_B: i32 = -4681;
/// YUV -> RGB: `255/219`, `1.402 * 255/224`, `0.344136 * 255/224`, `0.714136 * 255/224`,
/// `1.772 * 255/224` in Q16.
const C_Y: i32 = 76309;
const C_RV: i32 = 104597;
const C_GU: i32 = 25675;
const C_GV: i32 = 53279;
const C_BU: i32 = 132201;
/// RGB -> gray (full range): `(0.299, 0.587, 0.114)` in Q16; they add up to 65536.
const G_R: i32 = 19595;
const G_G: i32 = 38470;
const G_B: i32 = 7471;
/// gray -> Y: `219/255` in Q16 (`Y_R + Y_G + Y_B`, so a grey RGB pixel and its gray value agree).
const Y_GRAY: i32 = Y_R + Y_G + Y_B;
const HALF: i32 = 1 << 15;

#[inline(always)]
fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// Limited-range luma of one RGB pixel.
#[inline(always)]
fn luma(r: i32, g: i32, b: i32) -> u8 {
    ((Y_R * r + Y_G * g + Y_B * b + (16 << 16) + HALF) >> 16) as u8
}

/// Cb and Cr from the sums of a 2x2 block's R, G and B.
#[inline(always)]
fn chroma_of(sr: i32, sg: i32, sb: i32) -> (u8, u8) {
    let round = (128 << 18) + (1 << 17);
    (
        clamp_u8((U_R * sr + U_G * sg + U_B * sb + round) >> 18),
        clamp_u8((V_R * sr + V_G * sg + V_B * sb + round) >> 18),
    )
}

/// Full-range gray of one RGB pixel.
#[inline(always)]
fn gray_of_rgb(r: i32, g: i32, b: i32) -> u8 {
    ((G_R * r + G_G * g + G_B * b + HALF) >> 16) as u8
}

/// Full-range gray of a limited-range luma value.
#[inline(always)]
fn gray_of_luma(y: u8) -> u8 {
    clamp_u8((C_Y * (y as i32 - 16) + HALF) >> 16)
}

/// Limited-range luma of a full-range gray value.
#[inline(always)]
fn luma_of_gray(g: u8) -> u8 {
    ((Y_GRAY * g as i32 + (16 << 16) + HALF) >> 16) as u8
}

/// Byte offsets of R and B in a packed pixel: BGR or RGB order.
#[inline(always)]
const fn rb(bgr: bool) -> (usize, usize) {
    if bgr {
        (2, 0)
    } else {
        (0, 2)
    }
}

/// The chroma planes of a 4:2:0 picture as separate U and V planes.
#[inline(always)]
fn split_chroma(src: &PictureRef<'_>) -> (Vec<u8>, Vec<u8>) {
    let (_, u, v) = src.planes();
    if src.format == PixelFormat::Yuv420p {
        (u.to_vec(), v.to_vec())
    } else {
        (
            u.iter().step_by(2).copied().collect(),
            u.iter().skip(1).step_by(2).copied().collect(),
        )
    }
}

/// A 4:2:0 picture in `format` from its Y, U and V planes.
#[inline(always)]
fn join_420(format: PixelFormat, y: &[u8], u: &[u8], v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(y.len() + u.len() * 2);
    out.extend_from_slice(y);
    if format == PixelFormat::Yuv420p {
        out.extend_from_slice(u);
        out.extend_from_slice(v);
    } else {
        for (&a, &b) in u.iter().zip(v) {
            out.push(a);
            out.push(b);
        }
    }
    out
}

/// Writes chroma row `row` (U and V samples) into the chroma area of a 4:2:0 picture.
#[inline(always)]
fn put_chroma_row(format: PixelFormat, chroma: &mut [u8], row: usize, u: &[u8], v: &[u8]) {
    let cw = u.len();
    if format == PixelFormat::Yuv420p {
        let plane = chroma.len() / 2;
        chroma[row * cw..(row + 1) * cw].copy_from_slice(u);
        chroma[plane + row * cw..plane + (row + 1) * cw].copy_from_slice(v);
    } else {
        let uv = &mut chroma[row * 2 * cw..(row + 1) * 2 * cw];
        for ((pair, &a), &b) in uv.chunks_exact_mut(2).zip(u).zip(v) {
            pair[0] = a;
            pair[1] = b;
        }
    }
}

/// Reads chroma row `row` of a 4:2:0 picture into `u` and `v` (one sample per 2 pixels).
#[inline(always)]
fn get_chroma_row(src: &PictureRef<'_>, row: usize, u: &mut [u8], v: &mut [u8]) {
    let cw = u.len();
    let (_, a, b) = src.planes();
    if src.format == PixelFormat::Yuv420p {
        u.copy_from_slice(&a[row * cw..(row + 1) * cw]);
        v.copy_from_slice(&b[row * cw..(row + 1) * cw]);
    } else {
        let uv = &a[row * 2 * cw..(row + 1) * 2 * cw];
        for ((pair, x), y) in uv.chunks_exact(2).zip(u.iter_mut()).zip(v.iter_mut()) {
            *x = pair[0];
            *y = pair[1];
        }
    }
}

#[inline(always)]
fn rgb_to_rgb(src: &PictureRef<'_>, to: PixelFormat) -> Vec<u8> {
    let mut out = src.data.to_vec();
    if src.format != to {
        out.chunks_exact_mut(3).for_each(|p| p.swap(0, 2));
    }
    out
}

/// Planar R, G, B copies of packed rows, so the per-pixel arithmetic vectorizes.
struct Planar {
    r: Vec<u8>,
    g: Vec<u8>,
    b: Vec<u8>,
}

impl Planar {
    #[inline(always)]
    fn new(w: usize) -> Self {
        Self {
            r: vec![0; w],
            g: vec![0; w],
            b: vec![0; w],
        }
    }

    #[inline(always)]
    fn load<const BGR: bool>(&mut self, row: &[u8]) {
        let (ri, bi) = rb(BGR);
        let dst = self
            .r
            .iter_mut()
            .zip(self.g.iter_mut())
            .zip(self.b.iter_mut());
        for (((r, g), b), px) in dst.zip(row.chunks_exact(3)) {
            (*r, *g, *b) = (px[ri], px[1], px[bi]);
        }
    }

    #[inline(always)]
    fn pixels(&self) -> impl Iterator<Item = (i32, i32, i32)> + '_ {
        let rgb = self.r.iter().zip(&self.g).zip(&self.b);
        rgb.map(|((&r, &g), &b)| (r as i32, g as i32, b as i32))
    }

    /// Sums of each pair of pixels with the pair below it (in `other`), per channel, into
    /// `sums` (one loop per channel: simple loops vectorize).
    #[inline(always)]
    fn block_sums(&self, other: &Planar, sums: &mut [Vec<i32>; 3]) {
        let channels = [
            (&self.r, &other.r),
            (&self.g, &other.g),
            (&self.b, &other.b),
        ];
        for ((a, b), dst) in channels.into_iter().zip(sums.iter_mut()) {
            let pairs = a.chunks_exact(2).zip(b.chunks_exact(2));
            for (d, (x, y)) in dst.iter_mut().zip(pairs) {
                *d = x[0] as i32 + x[1] as i32 + y[0] as i32 + y[1] as i32;
            }
        }
    }
}

#[inline(always)]
fn rgb_to_gray<const BGR: bool>(src: &PictureRef<'_>) -> Vec<u8> {
    let w = src.width;
    let mut out = vec![0u8; w * src.height];
    let mut rows = Planar::new(w);
    for (row, gray) in src.data.chunks_exact(3 * w).zip(out.chunks_exact_mut(w)) {
        rows.load::<BGR>(row);
        for (g, (r, gg, b)) in gray.iter_mut().zip(rows.pixels()) {
            *g = gray_of_rgb(r, gg, b);
        }
    }
    out
}

#[inline(always)]
fn rgb_to_420<const BGR: bool>(src: &PictureRef<'_>, to: PixelFormat) -> Vec<u8> {
    let (w, h) = (src.width, src.height);
    let mut out = vec![0u8; w * h * 3 / 2];
    let (y, chroma) = out.split_at_mut(w * h);
    let (mut top, mut bottom) = (Planar::new(w), Planar::new(w));
    let (mut u, mut v) = (vec![0u8; w / 2], vec![0u8; w / 2]);
    let mut sums = [vec![0i32; w / 2], vec![0i32; w / 2], vec![0i32; w / 2]];
    let pairs = src.data.chunks_exact(6 * w).zip(y.chunks_exact_mut(2 * w));
    for (row, (rgb, luma_rows)) in pairs.enumerate() {
        let (rgb0, rgb1) = rgb.split_at(3 * w);
        let (y0, y1) = luma_rows.split_at_mut(w);
        top.load::<BGR>(rgb0);
        bottom.load::<BGR>(rgb1);
        for (out_row, rows) in [(y0, &top), (y1, &bottom)] {
            for (yy, (r, g, b)) in out_row.iter_mut().zip(rows.pixels()) {
                *yy = luma(r, g, b);
            }
        }
        top.block_sums(&bottom, &mut sums);
        let [sr, sg, sb] = &sums;
        let blocks = sr.iter().zip(sg).zip(sb);
        for ((cb, cr), ((&r, &g), &b)) in u.iter_mut().zip(v.iter_mut()).zip(blocks) {
            (*cb, *cr) = chroma_of(r, g, b);
        }
        put_chroma_row(to, chroma, row, &u, &v);
    }
    out
}

/// Per-pixel chroma terms of one chroma row (each sample covers 2 pixels), and planar scratch
/// rows: computing planes first and interleaving after lets the arithmetic vectorize.
struct RgbRows {
    r_add: Vec<i32>,
    g_add: Vec<i32>,
    b_add: Vec<i32>,
    planes: [Vec<u8>; 3],
}

impl RgbRows {
    #[inline(always)]
    fn new(w: usize) -> Self {
        Self {
            r_add: vec![0; w],
            g_add: vec![0; w],
            b_add: vec![0; w],
            planes: [vec![0; w], vec![0; w], vec![0; w]],
        }
    }

    #[inline(always)]
    fn set_chroma(&mut self, u: &[u8], v: &[u8]) {
        let terms = self
            .r_add
            .chunks_exact_mut(2)
            .zip(self.g_add.chunks_exact_mut(2));
        let terms = terms.zip(self.b_add.chunks_exact_mut(2));
        for (((r, g), b), (&uu, &vv)) in terms.zip(u.iter().zip(v)) {
            let (d, e) = (uu as i32 - 128, vv as i32 - 128);
            // (c - gu d - gv e) summed in another order: integers, so the same value.
            r.fill(C_RV * e);
            g.fill(-(C_GU * d) - C_GV * e);
            b.fill(C_BU * d);
        }
    }

    /// One row of packed RGB (BGR) from one row of Y and the current chroma terms.
    #[inline(always)]
    fn row<const BGR: bool>(&mut self, y: &[u8], out: &mut [u8]) {
        let [rp, gp, bp] = &mut self.planes;
        let adds = self.r_add.iter().zip(&self.g_add).zip(&self.b_add);
        let dst = rp.iter_mut().zip(gp.iter_mut()).zip(bp.iter_mut());
        for ((((r, g), b), ((&ra, &ga), &ba)), &luma) in dst.zip(adds).zip(y) {
            let c = C_Y * (luma as i32 - 16) + HALF;
            *r = clamp_u8((c + ra) >> 16);
            *g = clamp_u8((c + ga) >> 16);
            *b = clamp_u8((c + ba) >> 16);
        }
        let (ri, bi) = rb(BGR);
        for (px, ((&r, &g), &b)) in out
            .chunks_exact_mut(3)
            .zip(rp.iter().zip(gp.iter()).zip(bp.iter()))
        {
            px[ri] = r;
            px[1] = g;
            px[bi] = b;
        }
    }
}

#[inline(always)]
fn yuv_to_rgb(src: &PictureRef<'_>, to: PixelFormat) -> Vec<u8> {
    let w = src.width;
    let (y, _, _) = src.planes();
    let mut out = vec![0u8; w * src.height * 3];
    let (mut u, mut v) = (vec![0u8; w / 2], vec![0u8; w / 2]);
    let mut rows = RgbRows::new(w);
    for (row, (yy, rgb)) in y
        .chunks_exact(w)
        .zip(out.chunks_exact_mut(3 * w))
        .enumerate()
    {
        if row % 2 == 0 {
            get_chroma_row(src, row / 2, &mut u, &mut v);
            rows.set_chroma(&u, &v);
        }
        if to == PixelFormat::Bgr24 {
            rows.row::<true>(yy, rgb);
        } else {
            rows.row::<false>(yy, rgb);
        }
    }
    out
}

#[inline(always)]
fn gray_to(src: &PictureRef<'_>, to: PixelFormat) -> Vec<u8> {
    match to {
        PixelFormat::Gray => src.data.to_vec(),
        PixelFormat::Rgb24 | PixelFormat::Bgr24 => {
            src.data.iter().flat_map(|&g| [g, g, g]).collect()
        }
        PixelFormat::Yuv420p | PixelFormat::Nv12 => {
            let y: Vec<u8> = src.data.iter().map(|&g| luma_of_gray(g)).collect();
            let neutral = vec![128u8; y.len() / 4];
            join_420(to, &y, &neutral, &neutral)
        }
    }
}

/// The conversion itself; every helper above is inlined into it, so the AVX2 build below
/// compiles all the loops for AVX2.
#[inline(always)]
fn convert_data(src: &PictureRef<'_>, to: PixelFormat) -> Vec<u8> {
    use PixelFormat::*;
    match (src.format, to) {
        (a, b) if a == b => src.data.to_vec(),
        (Rgb24 | Bgr24, Rgb24 | Bgr24) => rgb_to_rgb(src, to),
        (Rgb24, Gray) => rgb_to_gray::<false>(src),
        (Bgr24, Gray) => rgb_to_gray::<true>(src),
        (Rgb24, Yuv420p | Nv12) => rgb_to_420::<false>(src, to),
        (Bgr24, Yuv420p | Nv12) => rgb_to_420::<true>(src, to),
        (Yuv420p | Nv12, Rgb24 | Bgr24) => yuv_to_rgb(src, to),
        (Yuv420p | Nv12, Gray) => src.planes().0.iter().map(|&y| gray_of_luma(y)).collect(),
        (Yuv420p | Nv12, Yuv420p | Nv12) => {
            let (u, v) = split_chroma(src);
            join_420(to, src.planes().0, &u, &v)
        }
        (Gray, _) => gray_to(src, to),
    }
}

/// [`convert_data`] compiled for AVX2: the same integer arithmetic (so the same bytes), on
/// vectors twice as wide; 3-6x faster than the portable build on 720p pictures.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn convert_avx2(src: &PictureRef<'_>, to: PixelFormat) -> Vec<u8> {
    convert_data(src, to)
}

/// Whether to run the AVX2 build: the CPU has AVX2 and `REMOTEMEDIA_NO_SIMD` is not set.
fn detect_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::env::var_os("REMOTEMEDIA_NO_SIMD").is_none() && is_x86_feature_detected!("avx2") {
        return true;
    }
    false
}

/// Converts pictures to one pixel format.
#[derive(Debug, Clone)]
pub struct ColorConvert {
    format: PixelFormat,
    /// Run the AVX2 build of the loops (chosen once, at construction).
    avx2: bool,
}

impl ColorConvert {
    /// `format` must be one of [`PixelFormat::NAMES`] (`ConfigError` otherwise).
    pub fn new(format: &str) -> Result<Self> {
        let format = PixelFormat::parse(format).ok_or_else(|| {
            EngineError::config(format!(
                "format must be one of {}, got '{format}'",
                PixelFormat::NAMES
            ))
        })?;
        Ok(Self {
            format,
            avx2: detect_avx2(),
        })
    }

    /// A converter to `gray` (`GrayscaleKernel`).
    pub fn gray() -> Self {
        Self {
            format: PixelFormat::Gray,
            avx2: detect_avx2(),
        }
    }

    /// The same converter on the portable build of the loops (for tests and comparisons).
    pub fn portable(mut self) -> Self {
        self.avx2 = false;
        self
    }

    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// `src` (already checked) in this converter's format; a 4:2:0 target needs an even size
    /// (`FormatError`).
    pub fn convert(&self, src: PictureRef<'_>) -> Result<Picture> {
        let to = self.format;
        let (w, h) = (src.width, src.height);
        if to.is_yuv() && (!w.is_multiple_of(2) || !h.is_multiple_of(2)) {
            return Err(EngineError::format(format!(
                "cannot convert a {w}x{h} picture to {}: 4:2:0 needs an even width and height",
                to.name()
            )));
        }
        let data = if self.avx2 {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `avx2` is only set after detecting AVX2 on this CPU.
            unsafe {
                convert_avx2(&src, to)
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("avx2 is only detected on x86_64")
        } else {
            convert_data(&src, to)
        };
        Ok(Picture {
            format: to,
            width: w,
            height: h,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(format: PixelFormat, w: usize, h: usize, data: Vec<u8>) -> Picture {
        assert_eq!(data.len(), format.len(w, h));
        Picture {
            format,
            width: w,
            height: h,
            data,
        }
    }

    fn convert(p: &Picture, to: &str) -> Picture {
        ColorConvert::new(to).unwrap().convert(p.as_ref()).unwrap()
    }

    #[test]
    fn constants_keep_greys_neutral_and_white_at_range_ends() {
        assert_eq!(U_R + U_G + U_B, 0);
        assert_eq!(V_R + V_G + V_B, 0);
        assert_eq!(G_R + G_G + G_B, 1 << 16);
        assert_eq!((luma(0, 0, 0), luma(255, 255, 255)), (16, 235));
        assert_eq!(chroma_of(4 * 77, 4 * 77, 4 * 77), (128, 128));
        assert_eq!(chroma_of(0, 0, 4 * 255), (240, 110));
        assert_eq!(chroma_of(4 * 255, 0, 0), (90, 240));
        assert_eq!((gray_of_luma(16), gray_of_luma(235)), (0, 255));
        assert_eq!((gray_of_luma(0), gray_of_luma(255)), (0, 255));
        for g in 0..=255u8 {
            assert_eq!(luma_of_gray(g), luma(g as i32, g as i32, g as i32));
            assert_eq!(gray_of_rgb(g as i32, g as i32, g as i32), g);
            assert!(gray_of_luma(luma_of_gray(g)).abs_diff(g) <= 1);
        }
    }

    #[test]
    fn rgb_yuv_round_trip_is_close_on_flat_blocks() {
        let mut lcg = crate::dsp::testutil::Lcg(7);
        // Flat 2x2 blocks: 4:2:0 loses nothing but rounding.
        let (w, h) = (8, 6);
        let mut data = vec![0u8; w * h * 3];
        for by in 0..h / 2 {
            for bx in 0..w / 2 {
                let px = [0, 1, 2].map(|_| (lcg.next_u32() % 256) as u8);
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let i = ((by * 2 + dy) * w + bx * 2 + dx) * 3;
                    data[i..i + 3].copy_from_slice(&px);
                }
            }
        }
        let rgb = picture(PixelFormat::Rgb24, w, h, data);
        for via in ["yuv420p", "nv12"] {
            let yuv = convert(&rgb, via);
            assert_eq!(yuv.data.len(), w * h * 3 / 2);
            let back = convert(&yuv, "rgb24");
            let worst = rgb
                .data
                .iter()
                .zip(&back.data)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            // Limited range quantizes 256 levels into 220 (224 for chroma): about 2 levels,
            // plus clipping of colours outside the YUV gamut's image of RGB.
            assert!(worst <= 3, "{via}: {worst}");
        }
    }

    #[test]
    fn planar_and_semi_planar_agree_and_bgr_swaps() {
        let rgb = picture(
            PixelFormat::Rgb24,
            4,
            2,
            (0..24).map(|i| (i * 10) as u8).collect(),
        );
        let a = convert(&rgb, "yuv420p");
        let b = convert(&rgb, "nv12");
        assert_eq!(convert(&a, "nv12"), b);
        assert_eq!(convert(&b, "yuv420p"), a);
        assert_eq!(b.data[8..], [a.data[8], a.data[10], a.data[9], a.data[11]]);
        let bgr = convert(&rgb, "bgr24");
        assert_eq!(&bgr.data[..3], &[20, 10, 0]);
        assert_eq!(convert(&bgr, "yuv420p"), a);
        assert_eq!(convert(&bgr, "gray"), convert(&rgb, "gray"));
        assert_eq!(convert(&bgr, "rgb24"), rgb);
    }

    #[test]
    fn portable_and_avx2_builds_give_the_same_bytes() {
        let mut lcg = crate::dsp::testutil::Lcg(11);
        let (w, h) = (70, 36);
        for format in ["rgb24", "bgr24", "gray", "yuv420p", "nv12"] {
            let f = PixelFormat::parse(format).unwrap();
            let src = picture(
                f,
                w,
                h,
                (0..f.len(w, h)).map(|_| lcg.next_u32() as u8).collect(),
            );
            for to in ["rgb24", "bgr24", "gray", "yuv420p", "nv12"] {
                let fast = ColorConvert::new(to).unwrap();
                let slow = fast.clone().portable();
                assert_eq!(
                    fast.convert(src.as_ref()).unwrap(),
                    slow.convert(src.as_ref()).unwrap(),
                    "{format} -> {to}"
                );
            }
        }
    }

    #[test]
    fn gray_paths() {
        let gray = picture(PixelFormat::Gray, 2, 2, vec![0, 100, 128, 255]);
        assert_eq!(convert(&gray, "rgb24").data[3..6], [100, 100, 100]);
        let yuv = convert(&gray, "yuv420p");
        assert_eq!(yuv.data, vec![16, 102, 126, 235, 128, 128]);
        assert_eq!(convert(&yuv, "gray").data, vec![0, 100, 128, 255]);
        let odd = picture(PixelFormat::Gray, 3, 2, vec![0; 6]);
        let err = ColorConvert::new("nv12")
            .unwrap()
            .convert(odd.as_ref())
            .unwrap_err();
        assert_eq!(
            err.message,
            "cannot convert a 3x2 picture to nv12: 4:2:0 needs an even width and height"
        );
        assert_eq!(
            ColorConvert::new("rgba").unwrap_err().message,
            "format must be one of ['rgb24', 'bgr24', 'gray', 'yuv420p', 'nv12'], got 'rgba'"
        );
    }
}
