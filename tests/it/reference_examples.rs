//! Examples quoted from the Dockerfile reference (BuildKit's
//! `frontend/dockerfile/docs/reference.md`), pinning what the conformance
//! corpus does not cover: heredocs, COPY/ADD/RUN flags and the stage graph.

use hoist_dockerfile::instructions::{Kind, MountType, Sharing, parse_instruction};
use hoist_dockerfile::parse;
use hoist_dockerfile::plan::{Base, Options, plan};

fn instructions(src: &str) -> Vec<Kind> {
    let ast = parse(src).expect("reference example parses");
    ast.nodes
        .iter()
        .map(|n| parse_instruction(n).expect("reference example types").kind)
        .collect()
}

/// "Here-Documents", "Example: Running a multi-line script".
#[test]
fn heredoc_multi_line_script() {
    let src = "# syntax=docker/dockerfile:1\nFROM debian\nRUN <<EOT bash\n  set -ex\n  apt-get update\n  apt-get install -y vim\nEOT\n";
    let Kind::Run { command, .. } = &instructions(src)[1] else {
        panic!()
    };
    assert_eq!(command.args, ["<<EOT bash"]);
    assert!(command.prepend_shell);
    assert_eq!(command.files[0].name, "EOT");
    assert_eq!(
        command.files[0].data,
        "  set -ex\n  apt-get update\n  apt-get install -y vim\n"
    );
}

/// "Here-Documents": several here-documents on one line.
#[test]
fn heredoc_multiple_on_one_line() {
    let src = "# syntax=docker/dockerfile:1\nFROM alpine\nRUN <<FILE1 cat > file1 && <<FILE2 cat > file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2\n";
    let Kind::Run { command, .. } = &instructions(src)[1] else {
        panic!()
    };
    let files: Vec<(&str, &str)> = command
        .files
        .iter()
        .map(|f| (f.name.as_str(), f.data.as_str()))
        .collect();
    assert_eq!(
        files,
        [("FILE1", "I am\nfirst\n"), ("FILE2", "I am\nsecond\n")]
    );
}

/// "Here-Documents", shebang example.
#[test]
fn heredoc_with_shebang() {
    let src = "# syntax=docker/dockerfile:1\nFROM python:3.6\nRUN <<EOT\n#!/usr/bin/env python\nprint(\"hello world\")\nEOT\n";
    let Kind::Run { command, .. } = &instructions(src)[1] else {
        panic!()
    };
    assert_eq!(
        command.files[0].data,
        "#!/usr/bin/env python\nprint(\"hello world\")\n"
    );
}

/// "Example: Creating inline files": `<<-EOT` expands, `<<-"EOT"` does not.
#[test]
fn heredoc_inline_files_and_quoting() {
    let src = "# syntax=docker/dockerfile:1\nFROM alpine\nARG FOO=bar\nCOPY <<-EOT /script.sh\n  echo \"hello ${FOO}\"\nEOT\nENTRYPOINT ash /script.sh\n";
    let Kind::Copy(c) = &instructions(src)[2] else {
        panic!()
    };
    assert_eq!(c.dest, "/script.sh");
    assert!(c.sources.is_empty());
    assert_eq!(
        c.contents[0].data, "  echo \"hello ${FOO}\"\n",
        "<<- strips tabs only, not spaces"
    );
    assert!(c.contents[0].expand);
    let quoted = src.replace("<<-EOT", "<<-\"EOT\"");
    let Kind::Copy(c) = &instructions(&quoted)[2] else {
        panic!()
    };
    assert!(!c.contents[0].expand);
    let simple =
        "# syntax=docker/dockerfile:1\nFROM alpine\nCOPY <<EOF greeting.txt\nhello world\nEOF\n";
    let Kind::Copy(c) = &instructions(simple)[1] else {
        panic!()
    };
    assert_eq!(
        (
            c.contents[0].path.as_str(),
            c.contents[0].data.as_str(),
            c.dest.as_str()
        ),
        ("EOF", "hello world\n", "greeting.txt")
    );
}

/// "RUN --mount=type=cache", "Example: cache apt packages".
#[test]
fn run_mount_cache_apt() {
    let src = "# syntax=docker/dockerfile:1\nFROM ubuntu\nRUN rm -f /etc/apt/apt.conf.d/docker-clean; echo 'Binary::apt::APT::Keep-Downloaded-Packages \"true\";' > /etc/apt/apt.conf.d/keep-cache\nRUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\\n  --mount=type=cache,target=/var/lib/apt,sharing=locked \\\n  apt-get update && apt-get --no-install-recommends install -y gcc\n";
    let Kind::Run {
        command, mounts, ..
    } = &instructions(src)[2]
    else {
        panic!()
    };
    assert_eq!(
        command.args,
        ["apt-get update && apt-get --no-install-recommends install -y gcc"]
    );
    let m: Vec<_> = mounts
        .iter()
        .map(|spec| spec.expand(&mut |v| Ok(v.to_string())).unwrap())
        .collect();
    assert_eq!(m.len(), 2);
    assert!(
        m.iter().all(|m| m.kind == MountType::Cache
            && m.sharing == Some(Sharing::Locked)
            && !m.readonly)
    );
    assert_eq!(m[1].target.as_deref(), Some("/var/lib/apt"));
}

/// "RUN --mount=type=secret": as a file and as an environment variable.
#[test]
fn run_mount_secret() {
    let src = "# syntax=docker/dockerfile:1\nFROM python:3\nRUN pip install awscli\nRUN --mount=type=secret,id=aws,target=/root/.aws/credentials \\\n  aws s3 cp s3://... ...\n";
    let Kind::Run { mounts, .. } = &instructions(src)[2] else {
        panic!()
    };
    let m = mounts[0].expand(&mut |v| Ok(v.to_string())).unwrap();
    assert_eq!(
        (m.kind, m.id.as_deref(), m.target.as_deref(), m.readonly),
        (
            MountType::Secret,
            Some("aws"),
            Some("/root/.aws/credentials"),
            true
        )
    );
    let src = "# syntax=docker/dockerfile:1\nFROM alpine\nRUN --mount=type=secret,id=API_KEY,env=API_KEY \\\n    some-command --token-from-env $API_KEY\n";
    let Kind::Run {
        mounts, command, ..
    } = &instructions(src)[1]
    else {
        panic!()
    };
    let m = mounts[0].expand(&mut |v| Ok(v.to_string())).unwrap();
    assert_eq!(m.env.as_deref(), Some("API_KEY"));
    assert_eq!(
        command.args,
        ["some-command --token-from-env $API_KEY"],
        "RUN words are left to the shell"
    );
}

/// "RUN --mount=type=ssh", "Example: access to GitLab".
#[test]
fn run_mount_ssh() {
    let src = "# syntax=docker/dockerfile:1\nFROM alpine\nRUN apk add --no-cache openssh-client\nRUN mkdir -p -m 0700 ~/.ssh && ssh-keyscan gitlab.com >> ~/.ssh/known_hosts\nRUN --mount=type=ssh \\\n  ssh -q -T git@gitlab.com 2>&1 | tee /hello\n# \"Welcome to GitLab, @GITLAB_USERNAME_ASSOCIATED_WITH_SSHKEY\" should be printed here\n# with the type of build progress is defined as `plain`.\n";
    let kinds = instructions(src);
    assert_eq!(kinds.len(), 4, "trailing comments are not instructions");
    let Kind::Run { mounts, .. } = &kinds[3] else {
        panic!()
    };
    assert_eq!(
        mounts[0].expand(&mut |v| Ok(v.to_string())).unwrap().kind,
        MountType::Ssh
    );
}

/// "COPY --link", "COPY --parents", "COPY --exclude", "ADD --unpack".
#[test]
fn copy_and_add_flags() {
    let Kind::Copy(c) =
        &instructions("# syntax=docker/dockerfile:1\nFROM alpine\nCOPY --link /foo /bar\n")[1]
    else {
        panic!()
    };
    assert!(c.link);
    let src = "# syntax=docker/dockerfile:1\nFROM scratch\n\nCOPY ./x/a.txt ./y/a.txt /no_parents/\nCOPY --parents ./x/a.txt ./y/a.txt /parents/\n";
    let kinds = instructions(src);
    let (Kind::Copy(no), Kind::Copy(yes)) = (&kinds[1], &kinds[2]) else {
        panic!()
    };
    assert!(!no.parents && yes.parents);
    assert_eq!(yes.sources, ["./x/a.txt", "./y/a.txt"]);
    let src = "# syntax=docker/dockerfile:1\nFROM scratch\n\nCOPY --exclude=*.txt --exclude=*.md hom* /mydir/\n";
    let Kind::Copy(c) = &instructions(src)[1] else {
        panic!()
    };
    assert_eq!(c.excludes, ["*.txt", "*.md"]);
    assert_eq!(
        (c.sources.as_slice(), c.dest.as_str()),
        (&["hom*".to_string()][..], "/mydir/")
    );
    let src = "# syntax=docker/dockerfile:1\nFROM alpine\n# Download and unpack archive.tar.gz into /download:\nADD --unpack=true https://example.com/archive.tar.gz /download\n# Add local tar without unpacking:\nADD --unpack=false my-archive.tar.gz .\n";
    let kinds = instructions(src);
    let (Kind::Add(a), Kind::Add(b)) = (&kinds[1], &kinds[2]) else {
        panic!()
    };
    assert_eq!((a.unpack, b.unpack), (Some(true), Some(false)));
}

/// "Understand how ARG and FROM interact" and ONBUILD's stage sources.
#[test]
fn stage_graph_examples() {
    let src = "ARG  CODE_VERSION=latest\nFROM base:${CODE_VERSION}\nCMD  /code/run-app\n\nFROM extras:${CODE_VERSION}\nCMD  /code/run-extras\n";
    let p = plan(&parse(src).unwrap(), &Options::default()).unwrap();
    assert_eq!(
        p.stages.iter().map(|s| s.base.clone()).collect::<Vec<_>>(),
        [
            Base::Image("base:latest".into()),
            Base::Image("extras:latest".into())
        ]
    );
    assert_eq!(p.order, [1], "the last stage alone is the default target");
    let src = "# syntax=docker/dockerfile:1.11\nFROM alpine AS baseimage\nONBUILD COPY --from=build /usr/bin/app /app\nONBUILD RUN --mount=from=config,target=/opt/appconfig ...\n";
    let p = plan(&parse(src).unwrap(), &Options::default()).unwrap();
    assert_eq!(
        p.stages[0].onbuild,
        [
            "COPY --from=build /usr/bin/app /app",
            "RUN --mount=from=config,target=/opt/appconfig ..."
        ]
    );
    assert!(
        p.stages[0].dependencies.is_empty(),
        "ONBUILD sources resolve in the child build"
    );
}
