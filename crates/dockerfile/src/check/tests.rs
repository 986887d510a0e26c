use super::*;

fn rules(src: &str) -> Vec<(&'static str, Severity, usize)> {
    check(src)
        .findings
        .iter()
        .map(|f| (f.rule, f.severity, f.line))
        .collect()
}

const CLEAN: &str = "FROM node:14-alpine\nWORKDIR /app\nUSER 1001\nCMD [\"node\", \"server.js\"]\n";

#[test]
fn a_clean_dockerfile_has_no_findings() {
    assert_eq!(rules(CLEAN), []);
}

#[test]
fn every_bad_line_is_reported_not_only_the_first() {
    let r =
        check("FROM a:1\nRUNN x\nCOPY --form=b a b\nHEALTHCHECK --interval=5 CMD true\nUSER 1\n");
    let lines: Vec<(usize, usize)> = r.findings.iter().map(|f| (f.line, f.column)).collect();
    assert_eq!(lines, [(2, 1), (3, 6), (4, 13)]);
    assert_eq!(r.errors(), 3);
    assert_eq!(r.findings[0].hint.as_deref(), Some("did you mean RUN?"));
}

#[test]
fn structural_errors() {
    let e = |src: &str| {
        let r = check(src);
        assert_eq!(r.errors(), 1, "{src}: {:?}", r.findings);
        r.findings[0].message.clone()
    };
    assert!(e("RUN x\nFROM a:1\n").contains("not allowed before the first FROM"));
    assert!(e("FROM a:1 AS x\nFROM b:1 AS x\n").contains("duplicate stage name"));
    assert!(
        e("FROM a:1 AS builder\nFROM b:1\nCOPY --from=buildr /a /a\n")
            .contains("--from=buildr names no stage")
    );
    assert!(e("FROM a:1\nENV PATH\n").contains("ENV must have two arguments"));
    assert!(e("FROM a:1\nRUN <<EOF\necho\n").contains("unterminated heredoc"));
    assert!(e("FROM a:1\nHEALTHCHECK --start-period=1y CMD x\n").contains("unknown unit"));
    assert!(e("FROM a:1\nCOPY onlyone\n").contains("requires at least two arguments"));
    // An image with a tag is a valid --from.
    assert_eq!(
        check("FROM a:1\nCOPY --from=busybox:1.36 /bin/busybox /b\nUSER 1\n").errors(),
        0
    );
}

#[test]
fn warnings_follow_the_tutorial_best_practices() {
    let src = "FROM node\nMAINTAINER me\nARG NPM_TOKEN\nENV DB_PASSWORD=x PUBLIC_KEY=y\nWORKDIR app\nCMD node server.js\n";
    let got = rules(src);
    let expect = [
        ("BaseImageUnpinned", 1),
        ("FinalStageRunsAsRoot", 1),
        ("MaintainerDeprecated", 2),
        ("SecretsUsedInArgOrEnv", 3),
        ("SecretsUsedInArgOrEnv", 4),
        ("WorkdirRelativePath", 5),
        ("JSONArgsRecommended", 6),
    ];
    let got: Vec<(&str, usize)> = got
        .iter()
        .map(|(r, s, l)| {
            assert_eq!(*s, Severity::Warning);
            (*r, *l)
        })
        .collect();
    assert_eq!(got, expect);
    assert_eq!(check(src).errors(), 0);
    assert_eq!(
        rules("FROM a:latest\nUSER root\n"),
        [
            ("BaseImageUnpinned", Severity::Warning, 1),
            ("FinalStageRunsAsRoot", Severity::Warning, 2),
        ]
    );
}

#[test]
fn user_is_inherited_from_an_earlier_stage() {
    assert_eq!(rules("FROM a:1 AS base\nUSER app\nFROM base\n"), []);
}

#[test]
fn undefined_variables_in_expanded_words() {
    let src = "FROM a:1\nARG VERSION=1\nENV APP_HOME=/app\nCOPY app-$VERSON.tar $APP_HOME/\nRUN echo $NOT_CHECKED\nUSER 1\n";
    let f = check(src).findings;
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!((f[0].rule, f[0].line), ("UndefinedVar", 4));
    assert!(f[0].message.contains("$VERSON"));
    assert_eq!(f[0].hint.as_deref(), Some("did you mean $VERSION?"));
    let positional = "FROM a:1\nWORKDIR /x$1\nUSER 1\n";
    assert_eq!(
        rules(positional),
        [],
        "positional parameters are not variables"
    );
}

#[test]
fn check_directive_skips_and_escalates() {
    let src = "# check=skip=JSONArgsRecommended\nFROM a:1\nUSER 1\nCMD run it\n";
    assert_eq!(rules(src), []);
    let src = "# check=skip=all\nFROM a\nCMD run it\n";
    assert_eq!(rules(src), []);
    let src = "# check=error=true\nFROM a:1\nUSER 1\nCMD run it\n";
    assert_eq!(rules(src), [("JSONArgsRecommended", Severity::Error, 4)]);
    assert_eq!(
        CheckConfig::parse("skip=A, B ;error=TRUE"),
        CheckConfig {
            skip_all: false,
            skip: vec!["A".into(), "B".into()],
            error: true
        }
    );
}

#[test]
fn secret_names() {
    for yes in [
        "PASSWORD",
        "db_password",
        "apiKey",
        "GITHUB_TOKEN",
        "aws-secret",
        "AUTH",
    ] {
        assert!(rules::is_secret_name(yes), "{yes}");
    }
    for no in ["PUBLIC_KEY", "KEYBOARD", "NODE_ENV", "TOKENIZER", "monkey"] {
        assert!(!rules::is_secret_name(no), "{no}");
    }
}

#[test]
fn render_shows_source_caret_and_hint() {
    let src = "FROM a:1\nCOPY --form=x a b\n";
    let out = render(&check(src), "Dockerfile", src);
    assert_eq!(
        out,
        "Dockerfile:2:6: error: unknown flag: --form [syntax]\n 2 | COPY --form=x a b\n   |      ^\n  hint: did you mean --from?\n"
    );
}

#[test]
fn shell_form_after_shell_is_what_the_author_chose() {
    // BuildKit's JSONArgsRecommended stays quiet once SHELL is set, in the
    // stage or a stage it is built on.
    let src = "FROM a:1 AS base\nSHELL [\"powershell\", \"-Command\"]\nFROM base\nUSER 1\nCMD Write-Host hi\n";
    assert_eq!(rules(src), []);
    let src = "FROM a:1\nUSER 1\nCMD run it\nSHELL [\"/bin/bash\", \"-c\"]\nENTRYPOINT run it\n";
    assert_eq!(rules(src), [("JSONArgsRecommended", Severity::Warning, 3)]);
}

#[test]
fn final_stage_root_fires_only_where_something_runs_as_root() {
    let found = |src: &str| {
        check(src)
            .findings
            .into_iter()
            .filter(|f| f.rule == "FinalStageRunsAsRoot")
            .collect::<Vec<_>>()
    };
    // An image of files: nothing runs.
    assert!(
        found(
            "FROM golang:1.22 AS build\nRUN go build\nFROM scratch\nCOPY --from=build /app /app\n"
        )
        .is_empty()
    );
    // A Windows base.
    assert!(
        found("FROM mcr.microsoft.com/windows/servercore:ltsc2022\nCMD [\"cmd\"]\n").is_empty()
    );
    // A scratch image that runs something: a numeric USER is the hint.
    let f = found("FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n");
    assert_eq!(f.len(), 1);
    assert!(
        f[0].hint.as_deref().unwrap().contains("USER 65532"),
        "{f:?}"
    );
    // An image base keeps the adduser hint.
    let f = found("FROM debian:12\nCMD [\"bash\"]\n");
    assert!(f[0].hint.as_deref().unwrap().contains("adduser"), "{f:?}");
}

#[test]
fn buildkit_style_rules_fire_under_buildkits_names() {
    let names = |src: &str| -> Vec<(&'static str, usize)> {
        check(src)
            .findings
            .into_iter()
            .filter(|f| f.rule != "FinalStageRunsAsRoot" && f.rule != "BaseImageUnpinned")
            .map(|f| (f.rule, f.line))
            .collect()
    };
    assert_eq!(
        names("FROM a:1 as Build\nUSER 1\nrun true\nCMD [\"a\"]\n"),
        [
            ("FromAsCasing", 1),
            ("StageNameCasing", 1),
            ("ConsistentInstructionCasing", 3)
        ]
    );
    // Lower case throughout is consistent too.
    assert_eq!(names("from a:1 as build\nuser 1\ncmd [\"a\"]\n"), []);
    assert_eq!(
        names("FROM a:1 AS scratch\nUSER 1\n"),
        [("ReservedStageName", 1)]
    );
    assert_eq!(
        names("FROM a:1\nUSER 1\nENV A 1\nLABEL b 2\nENV C=3\n"),
        [("LegacyKeyValueFormat", 3), ("LegacyKeyValueFormat", 4)]
    );
    assert_eq!(
        names("FROM a:1\nUSER 1\nCMD [\"a\"]\nCMD [\"b\"]\nENTRYPOINT [\"c\"]\n"),
        [("MultipleInstructionsDisallowed", 3)]
    );
    assert_eq!(
        names("FROM --platform=$TARGETPLATFORM a:1\nUSER 1\n"),
        [("RedundantTargetPlatform", 1)]
    );
    assert_eq!(
        names("FROM --platform=linux/amd64 a:1\nUSER 1\n"),
        [("FromPlatformFlagConstDisallowed", 1)]
    );
    // A stage named for its platform means it; $BUILDPLATFORM is the pattern.
    assert_eq!(
        names(
            "FROM --platform=linux/arm64 a:1 AS build-arm64\nFROM --platform=$BUILDPLATFORM a:1\nUSER 1\n"
        ),
        []
    );
    assert_eq!(
        names("FROM a:1\nUSER 1\nEXPOSE 80/TCP 127.0.0.1:8080:80 443/udp\n"),
        [("ExposeInvalidFormat", 3), ("ExposeProtoCasing", 3)]
    );
    // And `# check=skip=` silences them by the same names.
    assert_eq!(
        names("# check=skip=StageNameCasing,FromAsCasing\nFROM a:1 as Build\nUSER 1\n"),
        []
    );
}

#[test]
fn undefined_var_carets_point_at_the_use() {
    let at = |src: &str| -> Vec<(usize, usize)> {
        check(src)
            .findings
            .into_iter()
            .filter(|f| f.rule == "UndefinedVar")
            .map(|f| (f.line, f.column))
            .collect()
    };
    // Under `${BRAND}`, not under the key of the same name.
    assert_eq!(at("FROM a:1\nUSER 1\nENV BRAND=${BRAND}\n"), [(3, 11)]);
    // On the physical line of a continued instruction.
    assert_eq!(at("FROM a:1\nUSER 1\nCOPY a \\\n    $NOPE /x\n"), [(4, 5)]);
    // `$NOPEX` is another name than `$NOPE`.
    assert_eq!(
        at("FROM a:1\nUSER 1\nWORKDIR /$NOPEX/$NOPE\n"),
        [(3, 10), (3, 17)]
    );
}

#[test]
fn windows_workdirs_from_a_drive_are_absolute() {
    let rules_of = |src: &str| -> Vec<String> {
        check(src)
            .findings
            .into_iter()
            .filter(|f| f.rule == "WorkdirRelativePath")
            .map(|f| f.message)
            .collect()
    };
    let base = "FROM mcr.microsoft.com/windows/servercore:ltsc2022\n";
    assert!(rules_of(&format!("{base}WORKDIR C:/app\n")).is_empty());
    assert!(rules_of(&format!("{base}WORKDIR F:\\\\app\n")).is_empty());
    assert!(!rules_of(&format!("{base}WORKDIR app\n")).is_empty());
    // Not on Linux, and the message shows the path without its quotes.
    let messages = rules_of("FROM a:1\nUSER 1\nWORKDIR \"app\"\n");
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].contains("workdir app ") && !messages[0].contains('"'),
        "{messages:?}"
    );
    assert_eq!(rules_of("FROM a:1\nUSER 1\nWORKDIR C:/app\n").len(), 1);
}
