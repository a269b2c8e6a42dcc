use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = multiple_choice, batch_size = 0, chunk_size = 0)]
struct Row {
    #[eval(context)]
    question: String,
    #[eval(choices)]
    choices: Vec<String>,
    #[eval(answer)]
    label: usize,
}

fn main() {}
