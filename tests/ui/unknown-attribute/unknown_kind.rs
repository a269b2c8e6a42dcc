use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(kind = multiple_guess)]
struct Row {
    #[eval(text)]
    text: String,
}

fn main() {}
