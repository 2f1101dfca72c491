//! CTC greedy decoding for the OCR stage: per time step the most likely class, repeats
//! collapsed, blanks (class 0) removed. Class `i ≥ 1` is `charset[i - 1]`; one class
//! past the charset is PP-OCR's appended space.

/// Decodes `probs`, a `[steps, classes]` row-major matrix of per-step probabilities.
/// Returns the text and the mean probability of the characters kept (0 when none).
pub fn greedy_decode(probs: &[f32], classes: usize, charset: &[String]) -> (String, f32) {
    let mut text = String::new();
    let (mut sum, mut kept) = (0.0f32, 0u32);
    let mut previous = 0usize;
    for step in probs.chunks_exact(classes) {
        let (best, p) =
            step.iter().enumerate().fold(
                (0usize, f32::MIN),
                |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc },
            );
        if best != 0 && best != previous {
            match charset.get(best - 1) {
                Some(c) => text.push_str(c),
                None => text.push(' '),
            }
            sum += p;
            kept += 1;
        }
        previous = best;
    }
    let confidence = if kept == 0 { 0.0 } else { sum / kept as f32 };
    (text, confidence)
}

/// Keeps what a licence plate can contain: upper-cased ASCII letters and digits.
pub fn plate_text(raw: &str) -> String {
    raw.chars()
        .map(|c| c.to_ascii_uppercase())
        .filter(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charset() -> Vec<String> {
        ["A", "B", "5", "·"].iter().map(|s| s.to_string()).collect()
    }

    /// One-hot steps over 6 classes (blank, A, B, 5, ·, space).
    fn steps(classes: &[usize]) -> Vec<f32> {
        let mut out = Vec::new();
        for &c in classes {
            let mut row = vec![0.01; 6];
            row[c] = 0.9;
            out.extend(row);
        }
        out
    }

    #[test]
    fn repeats_collapse_and_blanks_separate_doubled_letters() {
        let probs = steps(&[1, 1, 0, 1, 2, 2, 0, 0, 3]);
        let (text, confidence) = greedy_decode(&probs, 6, &charset());
        assert_eq!(text, "AAB5");
        assert!((confidence - 0.9).abs() < 1e-6);
    }

    #[test]
    fn the_class_past_the_charset_is_a_space_and_plates_are_filtered() {
        let probs = steps(&[1, 5, 4, 3]);
        let (text, _) = greedy_decode(&probs, 6, &charset());
        assert_eq!(text, "A ·5");
        assert_eq!(plate_text(&text), "A5");
        assert_eq!(plate_text("5au-534 1京"), "5AU5341");
        assert_eq!(
            greedy_decode(&steps(&[0, 0]), 6, &charset()),
            (String::new(), 0.0)
        );
    }
}
