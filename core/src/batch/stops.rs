//! Stop strings found as a generation grows, at a cost that does not grow with it.
//!
//! A generation ends at the first stop string in its decoded text, and its text is that text
//! cut before it (lm-eval's `until`). Decoding the whole generation after every token costs
//! time in proportion to its length, so a 1024-token generation decodes half a million tokens.
//! [`StopScan`] decodes only a tail of the tokens at each step: enough for its text to hold the
//! longest stop string and a margin. That tail's text is the whole text's tail but for its
//! first characters (a multi-byte character cut by the window, a decoder that strips the text's
//! first space), which the margin leaves out of reach of a stop string that ends in the tail.
//! A stop string the tail shows is confirmed on the whole text, which also gives the cut, so
//! the tail never decides the result: were it to miss a stop string, the generation would only
//! run longer, and [`StopScan::first_stop`] of the whole text at the end finds it.

use crate::error::Result;
use crate::tokenizer::Tokenizer;

/// Bytes of tail text beyond the longest stop string: room for the tail's first characters,
/// which may differ from the whole text's (up to three bytes of a cut character, each decoded
/// as a three-byte U+FFFD, and a stripped space).
const MARGIN: usize = 16;

/// Finds a generation's stop strings step by step (see the module docs).
///
/// ```no_run
/// use evalkit_core::batch::stops::StopScan;
/// let tok = evalkit_core::Tokenizer::from_dir("models/gpt2".as_ref())?;
/// let stops = vec!["\ndef".to_string()];
/// let scan = StopScan::new(&stops);
/// let ids = tok.encode_plain("    return x\ndef g():")?;
/// // The first prefix of the ids whose text holds the stop string gives the cut text.
/// let found = (1..=ids.len()).find_map(|n| scan.check(&tok, &ids[..n]).transpose());
/// assert_eq!(found.transpose()?.as_deref(), Some("    return x"));
/// # Ok::<(), evalkit_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct StopScan<'a> {
    stops: &'a [String],
    /// Bytes of tail text that hold any stop string with the margin to spare.
    tail_bytes: usize,
}

impl<'a> StopScan<'a> {
    /// A scan for `stops` (none: [`StopScan::check`] never finds one).
    pub fn new(stops: &'a [String]) -> Self {
        let longest = stops.iter().map(String::len).max().unwrap_or(0);
        StopScan {
            stops,
            tail_bytes: longest + MARGIN,
        }
    }

    /// After a token was appended to `tokens` (special tokens decode to nothing): the text of
    /// `tokens` cut before its first stop string, when it holds one. Call it after every token,
    /// or a stop string may leave the tail unseen (the whole text's [`StopScan::first_stop`]
    /// still finds it).
    pub fn check(&self, tok: &Tokenizer, tokens: &[i64]) -> Result<Option<String>> {
        if self.stops.is_empty() || tokens.is_empty() {
            return Ok(None);
        }
        // Tokens almost always decode to a byte or more, so this many usually suffice; where
        // they do not (special tokens, empty pieces), the tail doubles until its text does.
        let mut width = self.tail_bytes.min(tokens.len());
        loop {
            let start = tokens.len() - width;
            let tail = tok.decode(&tokens[start..], true)?;
            if start == 0 {
                return Ok(self.cut(tail));
            }
            if tail.len() >= self.tail_bytes {
                if !self.stops.iter().any(|s| tail.contains(s.as_str())) {
                    return Ok(None);
                }
                return Ok(self.cut(tok.decode(tokens, true)?));
            }
            width = (2 * width).min(tokens.len());
        }
    }

    /// Where `text`'s first stop string starts (a byte index), if it holds one.
    ///
    /// ```
    /// use evalkit_core::batch::stops::StopScan;
    /// let stops = vec!["\nclass".to_string(), "\n#".to_string()];
    /// let scan = StopScan::new(&stops);
    /// assert_eq!(scan.first_stop("a\nclass b\n# c"), Some(1));
    /// assert_eq!(scan.first_stop("a b"), None);
    /// ```
    pub fn first_stop(&self, text: &str) -> Option<usize> {
        self.stops.iter().filter_map(|s| text.find(s.as_str())).min()
    }

    /// `text` cut before its first stop string, if it holds one.
    fn cut(&self, mut text: String) -> Option<String> {
        let at = self.first_stop(&text)?;
        text.truncate(at);
        Some(text)
    }
}
