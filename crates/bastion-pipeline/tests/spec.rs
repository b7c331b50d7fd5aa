//! Pipeline files: the DAG and its order, and every malformed file refused on its line.

use bastion_pipeline::{Kind, Pipeline};

const QUICK: &str = r#"name = "bc"

[[step]]
id = "train"
kind = "train"
dataset = "${ingest.dataset}"
target = "diagnosis"
model = "gbdt"
register = "bc-gbdt"
needs = ["validate"]

[[step]]
id = "ingest"
kind = "ingest"
path = "bc.csv"
name = "bc"

[[step]]
id = "validate"
kind = "validate"
dataset = "${ingest.dataset}"
constraints = "bc.toml"

[[step]]
id = "gate"
kind = "gate"
model = "${train.model}"
policy = "production.toml"

[[step]]
id = "notes"
kind = "command"
run = ["echo", "model ${train.model} from ${ingest.dataset}"]
"#;

#[test]
fn steps_run_after_what_they_need() {
    let p = Pipeline::parse(QUICK).expect("pipeline");
    assert_eq!(p.name, "bc");
    assert_eq!(p.experiment, "bc");
    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["ingest", "validate", "train", "gate", "notes"]);
    let train = &p.steps[2];
    assert_eq!(train.kind, Kind::Train);
    assert_eq!(train.line, 3);
    assert_eq!(
        train.after.iter().map(String::as_str).collect::<Vec<_>>(),
        ["ingest", "validate"]
    );
    assert_eq!(train.params["model"], "gbdt");
    assert!(!train.params.contains_key("needs"));
    let dependents: Vec<String> = p.dependents("validate").into_iter().collect();
    assert_eq!(dependents, ["gate", "notes", "train"]);
    assert!(p.dependents("notes").is_empty());
}

fn refusal(text: &str) -> String {
    match Pipeline::parse(text) {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_pipelines_are_refused_on_their_line() {
    let head = "name = \"p\"\n";
    let ingest = "[[step]]\nid = \"ingest\"\nkind = \"ingest\"\npath = \"a.csv\"\nname = \"a\"\n";
    let cases: Vec<(String, &str)> = vec![
        ("name = \"p\"\n[[step]]\nid = \"a\"\nkind = \"ingest\"\npath = \"a.csv\"\nname = \"a\"\nid = \"b\"\n".into(), "line 7"),
        ("name = \"p\"\nowner = \"me\"\n".into(), "line 2"),
        ("name = \"p\"\n".into(), "no steps"),
        ("name = \"a b\"\n[[step]]\nid = \"x\"\nkind = \"profile\"\ndataset = \"d@v1\"\n".into(), "pipeline name 'a b'"),
        (format!("{head}\n[[step]]\nid = \"x\"\nkind = \"bake\"\n"), "line 3: step 'x': unknown kind 'bake'"),
        (format!("{head}[[step]]\nkind = \"profile\"\n"), "every step needs an id"),
        (format!("{head}[[step]]\nid = \"../x\"\nkind = \"profile\"\n"), "must be 1 to 64 letters"),
        (format!("{head}[[step]]\nid = \"x\"\nkind = \"profile\"\ndataset = \"d@v1\"\ndatset = 1\n"), "a profile step has no parameter 'datset'"),
        (format!("{head}[[step]]\nid = \"x\"\nkind = \"train\"\ndataset = \"d@v1\"\ntarget = \"y\"\nmodel = \"gbdt\"\n"), "a train step needs 'register'"),
        (format!("{head}{ingest}[[step]]\nid = \"ingest\"\nkind = \"profile\"\ndataset = \"d@v1\"\n"), "line 7: step 'ingest': another step is already called 'ingest'"),
        (format!("{head}[[step]]\nid = \"x\"\nkind = \"profile\"\ndataset = \"${{ingest.dataset}}\"\n"), "refers to step 'ingest', which does not exist"),
        (format!("{head}{ingest}[[step]]\nid = \"x\"\nkind = \"profile\"\ndataset = \"${{ingest.model}}\"\n"), "a ingest step's outputs are dataset, digest, rows"),
        (format!("{head}[[step]]\nid = \"x\"\nkind = \"profile\"\ndataset = \"${{x.dataset}}\"\n"), "refers to itself"),
        (format!("{head}[[step]]\nid = \"c\"\nkind = \"command\"\nrun = [\"true\"]\n[[step]]\nid = \"x\"\nkind = \"profile\"\ndataset = \"${{c.file}}\"\n"), "a command step's outputs are exit_code"),
        (format!("{head}[[step]]\nid = \"x\"\nkind = \"profile\"\ndataset = \"${{ingest}}\"\n"), "must name a step and one of its outputs"),
        (format!("{head}[[step]]\nid = \"x\"\nkind = \"profile\"\ndataset = \"d@v1\"\nneeds = \"y\"\n"), "needs must be a list"),
        (
            format!("{head}[[step]]\nid = \"a\"\nkind = \"profile\"\ndataset = \"${{c.dataset}}\"\n[[step]]\nid = \"b\"\nkind = \"profile\"\ndataset = \"${{a.dataset}}\"\n[[step]]\nid = \"c\"\nkind = \"profile\"\ndataset = \"${{b.dataset}}\"\n"),
            "line 2: step 'a': the steps depend on each other in a cycle: a → c → b → a",
        ),
    ];
    for (text, expected) in cases {
        let e = refusal(&text);
        assert!(
            e.contains(expected),
            "{text}\n gave: {e}\n expected: {expected}"
        );
    }
}

#[test]
fn data_preparation_and_tuning_steps_form_their_dag() {
    let text = r#"name = "prep"

[[step]]
id = "raw"
kind = "ingest"
postgres = "$WAREHOUSE"
query = "SELECT * FROM patients"
name = "patients"

[[step]]
id = "labels"
kind = "ingest"
path = "s3://bucket/labels/"
name = "labels"

[[step]]
id = "joined"
kind = "transform"
inputs = { p = "${raw.dataset}", l = "${labels.dataset}" }
sql = "SELECT * FROM p JOIN l USING (id)"
name = "joined"

[[step]]
id = "split"
kind = "split"
dataset = "${joined.dataset}"
validation = 0.1
stratify = "label"

[[step]]
id = "tune"
kind = "tune"
dataset = "${split.train}"
target = "label"
model = "gbdt"
register = "m"
search = "halving"
space = { max_depth = [3, 5], learning_rate = { min = 0.01, max = 0.3, log = true } }

[[step]]
id = "onnx"
kind = "register"
path = "exported/model.onnx"
name = "from-python"
needs = ["split"]
"#;
    let p = Pipeline::parse(text).unwrap();
    let order: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(order, ["raw", "labels", "joined", "split", "tune", "onnx"]);
    let joined = &p.steps[2];
    assert_eq!(joined.kind, Kind::Transform);
    assert_eq!(
        joined.after.iter().map(String::as_str).collect::<Vec<_>>(),
        ["labels", "raw"]
    );
    assert_eq!(p.steps[4].kind, Kind::Tune);
    assert_eq!(
        p.dependents("split"),
        ["onnx", "tune"].map(String::from).into()
    );

    let head = "name = \"p\"\n[[step]]\nid = \"s\"\nkind = \"split\"\ndataset = \"d@v1\"\n";
    let e = refusal(&format!(
        "{head}[[step]]\nid = \"x\"\nkind = \"profile\"\ndataset = \"${{s.model}}\"\n"
    ));
    assert!(
        e.contains("a split step's outputs are dataset, train, test, validation"),
        "{e}"
    );
    let e = refusal(
        "name = \"p\"\n[[step]]\nid = \"t\"\nkind = \"tune\"\ndataset = \"d\"\ntarget = \"y\"\nmodel = \"gbdt\"\nregister = \"m\"\n",
    );
    assert!(e.contains("a tune step needs 'space'"), "{e}");
    let e = refusal(
        "name = \"p\"\n[[step]]\nid = \"t\"\nkind = \"transform\"\nname = \"x\"\nsql = \"SELECT 1\"\n",
    );
    assert!(e.contains("a transform step needs 'inputs'"), "{e}");
}
