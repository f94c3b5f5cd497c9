//! Python's numeric conventions where a kernel must match its twin: how a float is shown in
//! messages, and how `round()` rounds.

/// A float as Python's `repr` shows it (`nan`, `inf`, `-inf`, `5.0`), for messages.
pub fn py_float(x: f64) -> String {
    if x.is_nan() {
        "nan".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{x:?}")
    }
}

/// Python's `round()` on a float: ties to even.
pub(crate) fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_round_is_half_even() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(-0.5), -0.0);
    }

    #[test]
    fn floats_read_as_python_shows_them() {
        assert_eq!(py_float(5.0), "5.0");
        assert_eq!(py_float(f64::NEG_INFINITY), "-inf");
        assert_eq!(py_float(f64::NAN), "nan");
    }
}
