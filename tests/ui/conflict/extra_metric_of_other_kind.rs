use evalkit::Evaluation;
use evalkit::core::kinds::McItem;

// extra_metrics may add names, but `bits_per_byte` is perplexity's.
#[derive(Evaluation)]
#[eval(kind = multiple_choice, context = "{q}", extra_metrics = Self::mass, metrics(acc, bits_per_byte))]
struct Row {
    q: String,
    #[eval(choices)]
    options: Vec<String>,
    #[eval(answer)]
    label: usize,
}

impl Row {
    fn mass(&self, _: &McItem, _: &[f64]) -> Vec<(&'static str, f64)> {
        vec![]
    }
}

fn main() {}
