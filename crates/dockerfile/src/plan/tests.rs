use super::*;
use crate::parse;

fn plan_src(src: &str, opts: &Options) -> Result<Plan, PlanError> {
    plan(&parse(src).unwrap(), opts)
}

fn opts() -> Options {
    Options {
        target_platform: Platform::parse("linux/amd64").unwrap(),
        build_platform: Platform::parse("linux/amd64").unwrap(),
        ..Options::default()
    }
}

#[test]
fn tutorial_web_app_two_stages() {
    let src = "FROM node:14-alpine AS build\nWORKDIR /app\nCOPY . .\nFROM node:14-alpine\nCOPY --from=build --chown=appuser:appuser /app .\n";
    let p = plan_src(src, &opts()).unwrap();
    assert_eq!(p.stages.len(), 2);
    assert_eq!(p.stages[0].name.as_deref(), Some("build"));
    assert_eq!(p.stages[1].base, Base::Image("node:14-alpine".into()));
    assert_eq!(p.order, [0, 1]);
    assert_eq!(
        p.stages[1]
            .dependencies
            .iter()
            .map(|d| (d.stage, d.line))
            .collect::<Vec<_>>(),
        [(0, 5)]
    );
}

#[test]
fn global_args_expand_from_and_build_args_override() {
    // Dockerfile reference, "Understand how ARG and FROM interact".
    let src = "ARG  CODE_VERSION=latest\nFROM base:${CODE_VERSION}\nCMD  /code/run-app\nFROM extras:${CODE_VERSION}\nCMD  /code/run-extras\n";
    let p = plan_src(src, &opts()).unwrap();
    assert_eq!(p.stages[0].base, Base::Image("base:latest".into()));
    let mut o = opts();
    o.build_args.insert("CODE_VERSION".into(), "1.2".into());
    let p = plan_src(src, &o).unwrap();
    assert_eq!(p.stages[1].base, Base::Image("extras:1.2".into()));
    assert_eq!(p.global_args[0].value.as_deref(), Some("1.2"));
}

#[test]
fn platform_args_are_predefined_in_global_scope() {
    let mut o = opts();
    o.target_platform = Platform::parse("linux/arm64").unwrap();
    let p = plan_src(
        "FROM --platform=$BUILDPLATFORM golang AS b\nFROM alpine-$TARGETARCH\n",
        &o,
    )
    .unwrap();
    assert_eq!(p.stages[0].platform.as_deref(), Some("linux/amd64"));
    assert_eq!(p.stages[1].base, Base::Image("alpine-arm64".into()));
    // containerd's normalisation: arm64/v8 is plain arm64, arm is arm/v7.
    assert_eq!(
        Platform::parse("linux/arm64/v8").unwrap().to_string(),
        "linux/arm64"
    );
    assert_eq!(
        Platform::parse("linux/arm").unwrap().to_string(),
        "linux/arm/v7"
    );
}

#[test]
fn target_prunes_unused_stages() {
    let src = "FROM a AS one\nFROM b AS two\nFROM one AS three\nRUN --mount=from=two,target=/x true\nFROM c AS four\n";
    let mut o = opts();
    o.target = Some("three".into());
    let p = plan_src(src, &o).unwrap();
    assert_eq!(p.target, 2);
    assert_eq!(p.order, [0, 1, 2]);
    assert_eq!(p.stages[2].base, Base::Stage(0));
    o.target = Some("THREE".into());
    assert_eq!(plan_src(src, &o).unwrap().target, 2);
    let p = plan_src(src, &opts()).unwrap();
    assert_eq!(p.order, [3]);
    o.target = Some("thre".into());
    match plan_src(src, &o).unwrap_err() {
        PlanError::UnknownTarget { hint, .. } => {
            assert_eq!(hint.as_deref(), Some("did you mean three?"))
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn copy_from_index_name_or_image() {
    let src = "FROM a\nFROM b AS named\nFROM c\nCOPY --from=0 /x /x\nCOPY --from=NAMED /y /y\nCOPY --from=nginx:latest /z /z\n";
    let p = plan_src(src, &opts()).unwrap();
    let deps: Vec<usize> = p.stages[2].dependencies.iter().map(|d| d.stage).collect();
    assert_eq!(deps, [0, 1]);
    assert!(p.stages[2].image_sources.contains("nginx:latest"));
    assert_eq!(p.order, [0, 1, 2]);
    assert!(plan_src("FROM a\nCOPY --from=5 /x /x\n", &opts()).is_err());
    assert!(plan_src("FROM a AS x\nCOPY --from=x /x /x\n", &opts()).is_err());
    assert!(plan_src("ARG S=a\nFROM a\nCOPY --from=$S /x /x\n", &opts()).is_err());
}

#[test]
fn forward_references_duplicates_and_instructions_before_from() {
    // BuildKit: a stage can only copy from a stage defined before it, so
    // no cycle can be written.
    let cyc = "FROM a AS x\nCOPY --from=y /a /a\nFROM b AS y\nCOPY --from=x /b /b\n";
    let err = plan_src(cyc, &opts()).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot copy from stage y, it needs to be defined before current stage x"),
        "{err}"
    );
    let dup = plan_src("FROM a AS x\nFROM b AS x\n", &opts()).unwrap_err();
    assert!(
        dup.to_string().contains("duplicate stage name \"x\""),
        "{dup}"
    );
    let before = plan_src("ENV A=b\nFROM a\n", &opts()).unwrap_err();
    assert!(
        before
            .to_string()
            .contains("ENV is not allowed before the first FROM")
    );
    assert!(
        plan_src("ARG X\nFROM $X\n", &opts())
            .unwrap_err()
            .to_string()
            .contains("should not be blank")
    );
}

#[test]
fn base_refers_only_to_earlier_stages_and_onbuild_is_recorded() {
    let p = plan_src(
        "FROM later\nONBUILD RUN echo hi\nFROM x AS later\n",
        &opts(),
    )
    .unwrap();
    assert_eq!(p.stages[0].base, Base::Image("later".into()));
    assert_eq!(p.stages[0].onbuild, ["RUN echo hi"]);
}

#[test]
fn unused_build_args_are_reported_but_proxies_are_not() {
    let mut o = opts();
    o.build_args.insert("NOPE".into(), "1".into());
    o.build_args.insert("HTTP_PROXY".into(), "http://p".into());
    o.build_args.insert("USED".into(), "1".into());
    let p = plan_src("FROM a\nARG USED\n", &o).unwrap();
    assert_eq!(p.unused_build_args, ["NOPE"]);
    assert_eq!(
        resolve_build_arg("K", |k| (k == "K").then(|| "env".to_string())),
        Some(("K".into(), "env".into()))
    );
    assert_eq!(resolve_build_arg("K", |_| None), None);
    assert_eq!(
        resolve_build_arg("K=a=b", |_| None),
        Some(("K".into(), "a=b".into()))
    );
}
