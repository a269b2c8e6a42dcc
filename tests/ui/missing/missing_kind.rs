use evalkit::Evaluation;

#[derive(Evaluation)]
#[eval(name = "texts")]
struct Row {
    #[eval(text)]
    text: String,
}

fn main() {}
