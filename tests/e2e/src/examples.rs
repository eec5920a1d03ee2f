//! The examples of vglet's documentation: every fenced code block of every markdown file and
//! every `Examples:` section of a binary's `--help`, each with its class — run in the guest,
//! checked offline, or not run for a stated reason. The convention is docs/examples.md;
//! tests/e2e/tests/doc_examples.rs runs what can run and fails on any block without a class.
//!
//! A markdown block is classified by an HTML comment right before it (invisible when the
//! page is rendered):
//!
//! ```text
//! <!-- example: run in WORLD
//!      expect: a line its output must contain     (repeatable)
//!      exit: 3                                     (default 0)
//!      check: a command that must succeed after it (repeatable) -->
//! <!-- example: serve in WORLD
//!      ready: a command that succeeds once it serves -->
//! <!-- example: offline kubernetes -->
//! <!-- example: not run: the reason -->
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};

/// What is done with one example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Run as written by `bash -e` in the named world of the guest test; it must exit with
    /// `exit`, its output (stdout and stderr) must contain every `expect` line, and every
    /// `check` command must succeed after it.
    Run {
        world: String,
        exit: i32,
        expect: Vec<String>,
        check: Vec<String>,
    },
    /// A long-running command (a server): started as written, it must make `ready` succeed
    /// while it keeps running; the blocks after it in the same world use it. Stopped when
    /// the world is torn down.
    Serve { world: String, ready: String },
    /// Kubernetes objects, validated offline by util/validate-manifests.sh.
    OfflineKubernetes,
    /// Not run; the reason says why (and where it is proven instead, if it is).
    NotRun(String),
}

impl Class {
    /// The world a guest-run class needs, if it is run in the guest.
    pub fn world(&self) -> Option<&str> {
        match self {
            Class::Run { world, .. } | Class::Serve { world, .. } => Some(world),
            _ => None,
        }
    }
}

const MARKER: &str = "example:";
/// The keys a marker may carry after its first line.
const KEYS: &[&str] = &["expect", "exit", "check", "ready"];

/// Parses the text of a marker (without `<!--`/`-->`): `example: CLASS` on the first line,
/// `key: value` lines after it.
pub fn parse_marker(text: &str) -> Result<Class, String> {
    // Logical lines: one starting with a key, or the head; any other line continues the
    // one before it (a long reason or command wrapped over lines).
    let mut logical: Vec<String> = Vec::new();
    for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let is_key = KEYS
            .iter()
            .any(|k| l.strip_prefix(k).is_some_and(|r| r.starts_with(':')));
        match logical.last_mut() {
            Some(last) if !is_key => {
                last.push(' ');
                last.push_str(l);
            }
            _ => logical.push(l.to_string()),
        }
    }
    let head = logical.first().map(String::as_str).unwrap_or("");
    let class = head
        .strip_prefix(MARKER)
        .ok_or_else(|| format!("a marker starts with `{MARKER}`: {head:?}"))?
        .trim();
    let mut keys: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for l in &logical[1..] {
        let (k, v) = l.split_once(':').unwrap();
        keys.entry(k).or_default().push(v.trim().to_string());
    }
    let mut take = |k: &str| keys.remove(k).unwrap_or_default();
    let world_of = |rest: &str| -> Result<String, String> {
        let w = rest
            .strip_prefix("in ")
            .map(str::trim)
            .filter(|w| !w.is_empty() && !w.contains(char::is_whitespace))
            .ok_or_else(|| format!("`{head}`: name the world, `in WORLD`"))?;
        Ok(w.to_string())
    };
    let parsed = if let Some(rest) = class.strip_prefix("run ") {
        let exit = match take("exit").as_slice() {
            [] => 0,
            [one] => one
                .parse()
                .map_err(|_| format!("`exit: {one}` is not a number"))?,
            more => return Err(format!("one `exit:` at most, got {more:?}")),
        };
        Class::Run {
            world: world_of(rest.trim())?,
            exit,
            expect: take("expect"),
            check: take("check"),
        }
    } else if let Some(rest) = class.strip_prefix("serve ") {
        let ready = match take("ready").as_slice() {
            [one] => one.clone(),
            _ => return Err(format!("`{head}` needs exactly one `ready:` command")),
        };
        Class::Serve {
            world: world_of(rest.trim())?,
            ready,
        }
    } else if class == "offline kubernetes" {
        Class::OfflineKubernetes
    } else if let Some(reason) = class.strip_prefix("not run:") {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err("`not run:` needs a reason".into());
        }
        Class::NotRun(reason.to_string())
    } else {
        return Err(format!(
            "unknown class {class:?}: run in W, serve in W, offline kubernetes, not run: REASON"
        ));
    };
    if let Some(k) = keys.keys().next() {
        return Err(format!("`{k}:` does not belong to `{class}`"));
    }
    Ok(parsed)
}

/// One example and where it comes from.
#[derive(Debug, Clone)]
pub struct Example {
    /// `path:line` of the block's opening fence, or `<binary> --help`.
    pub origin: String,
    /// The fence's info string (`sh`, `yaml`, empty ...); empty for help examples.
    pub lang: String,
    /// The block's text as written.
    pub text: String,
    /// Its class, or why it has none (no marker, or a malformed one).
    pub class: Result<Class, String>,
}

/// Every fenced or indented code block of a markdown text, in order, with the class its
/// marker gives. `label` names the file in each origin.
pub fn markdown_examples(label: &str, text: &str) -> Vec<Example> {
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let mut found = Vec::new();
    // The marker seen last, while nothing but it stands between it and the next block.
    let mut marker: Option<String> = None;
    let mut current: Option<(usize, String, String)> = None;
    let mut html: Option<String> = None;
    for (event, range) in Parser::new(text).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => info.trim().to_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                current = Some((line_of(range.start), lang, String::new()));
            }
            Event::Text(t) if current.is_some() => {
                current.as_mut().unwrap().2.push_str(&t);
            }
            Event::End(TagEnd::CodeBlock) => {
                let (line, lang, body) = current.take().unwrap();
                let class = match marker.take() {
                    Some(m) => parse_marker(&m),
                    None => Err(format!(
                        "no `<!-- {MARKER} ... -->` marker before the block (docs/examples.md)"
                    )),
                };
                found.push(Example {
                    origin: format!("{label}:{line}"),
                    lang,
                    text: body,
                    class,
                });
            }
            // An HTML block arrives line by line between its start and end.
            Event::Start(Tag::HtmlBlock) => html = Some(String::new()),
            Event::Html(h) if html.is_some() => html.as_mut().unwrap().push_str(&h),
            Event::End(TagEnd::HtmlBlock) => {
                let h = html.take().unwrap_or_default();
                marker = h
                    .trim()
                    .strip_prefix("<!--")
                    .and_then(|c| c.strip_suffix("-->"))
                    .map(str::trim)
                    .filter(|c| c.starts_with(MARKER))
                    .map(str::to_string);
            }
            // A list item or block quote may open around the block; anything with content
            // between marker and block detaches the marker.
            Event::Start(Tag::Item | Tag::List(_) | Tag::BlockQuote(_)) => {}
            _ => marker = None,
        }
    }
    found
}

/// The markdown files whose blocks are examples: every `*.md` under `root` except build
/// output (`target/`), fuzz corpora and artifacts, hidden directories and the CHANGELOG
/// (history, not instructions). Sorted, relative to `root`.
pub fn markdown_files(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = rel.join(&name);
            let skipped_dir = name.starts_with('.')
                || name == "target"
                || ["fuzz/corpus", "fuzz/artifacts", "fuzz/seeds"]
                    .iter()
                    .any(|s| path == Path::new(s));
            match e.file_type() {
                Ok(t) if t.is_dir() && !skipped_dir => walk(root, &path, out),
                Ok(t) if t.is_file() && name.ends_with(".md") && name != "CHANGELOG.md" => {
                    out.push(path)
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out);
    out.sort();
    out
}

/// The examples of one `--help` text's `Examples:` section: one per command line,
/// continuation lines (ending in `\`) joined with one space, `#` comment lines dropped,
/// runs of spaces squeezed (help wraps and indents; the shell does not care).
pub fn help_examples(help: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_examples = false;
    let mut current: Option<String> = None;
    for line in help.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            found.extend(current.take());
            in_examples = line.trim_end() == "Examples:";
            continue;
        }
        let body = line.trim();
        if !in_examples || body.starts_with('#') {
            continue;
        }
        match current.as_mut() {
            Some(c) if c.ends_with('\\') => {
                c.pop();
                c.push(' ');
                c.push_str(body);
            }
            _ => {
                found.extend(current.take());
                if !body.is_empty() {
                    current = Some(body.to_string());
                }
            }
        }
    }
    found.extend(current);
    found
        .into_iter()
        .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The subcommands a `--help` text lists under `Commands:` (without `help`).
pub fn help_subcommands(help: &str) -> Vec<String> {
    let mut in_commands = false;
    let mut found = Vec::new();
    for line in help.lines() {
        if !line.starts_with(' ') {
            in_commands = line.trim_end() == "Commands:";
            continue;
        }
        // A command's name is indented by two; its wrapped description by more.
        if in_commands && !line.starts_with("   ") {
            match line.split_whitespace().next() {
                Some(name) if name != "help" => found.push(name.to_string()),
                _ => {}
            }
        }
    }
    found
}

/// What a block did when run.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    /// stdout then stderr.
    pub output: String,
}

/// Everything wrong with `outcome` against a `Run` class's exit status and expected lines.
pub fn mismatches(outcome: &Outcome, exit: i32, expect: &[String]) -> Vec<String> {
    let mut wrong = Vec::new();
    if outcome.code != exit {
        wrong.push(format!("exit {} (want {exit})", outcome.code));
    }
    for e in expect {
        if !outcome.output.contains(e.as_str()) {
            wrong.push(format!("output lacks {e:?}"));
        }
    }
    wrong
}

/// Where a block runs: its working directory and environment.
#[derive(Debug, Clone)]
pub struct Shell {
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    /// Where the output of served blocks goes.
    pub scratch: PathBuf,
}

impl Shell {
    fn command(&self, text: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new("bash");
        // `-e`: a failing line fails the block, as a reader pasting it would notice.
        c.args(["-e", "-c", text])
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            // Its own process group: whatever it starts in the background is stopped with it.
            .process_group(0);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs `text` to its end, or stops it after `limit` (exit status -1, and a line that
    /// says so). Output goes through files, not pipes: a block that leaves a process in the
    /// background (`csi-driver ... &`) would hold a pipe open for ever.
    pub fn run(&self, text: &str, limit: Duration) -> Outcome {
        let (out_path, err_path) = (self.scratch.join("out"), self.scratch.join("err"));
        let mut child = self
            .command(text)
            .stdout(File::create(&out_path).expect("scratch file"))
            .stderr(File::create(&err_path).expect("scratch file"))
            .spawn()
            .expect("spawn bash");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for bash") {
                break Some(status);
            }
            if start.elapsed() > limit {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Whatever the block left in the background ends with it (a server that later
        // blocks use is a `serve` block).
        stop_group(child.id(), status.is_none().then_some(&mut child));
        let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
        let mut output = read(&out_path) + &read(&err_path);
        if status.is_none() {
            output.push_str(&format!("\n(stopped: still running after {limit:?})\n"));
        }
        Outcome {
            code: status.and_then(|s| s.code()).unwrap_or(-1),
            output,
        }
    }

    /// Starts `text` and waits until `ready` succeeds (polling once a second, up to
    /// `limit`; it finds the output so far in the file `$EXAMPLE_LOG`); fails when `text`
    /// exits first.
    pub fn serve(&self, text: &str, ready: &str, limit: Duration) -> Result<Served, String> {
        let n = std::fs::read_dir(&self.scratch).map_or(0, |d| d.count());
        let log = self.scratch.join(format!("served-{n}.log"));
        let file = File::create(&log).expect("scratch file");
        let child = self
            .command(text)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn bash");
        let mut probe = self.clone();
        probe
            .env
            .push(("EXAMPLE_LOG".into(), log.display().to_string()));
        let mut served = Served { child, log };
        let start = Instant::now();
        loop {
            if let Some(status) = served.child.try_wait().unwrap() {
                return Err(format!(
                    "exited ({status}) before `{ready}` succeeded:\n{}",
                    served.output()
                ));
            }
            if probe.run(ready, limit).code == 0 {
                return Ok(served);
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "`{ready}` did not succeed within {limit:?}:\n{}",
                    served.output()
                ));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// A served block, stopped (its whole process group) when dropped.
#[derive(Debug)]
pub struct Served {
    child: Child,
    pub log: PathBuf,
}

impl Served {
    /// Whether it still runs (a server that died after getting ready is a failure too).
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Its output so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        stop_group(self.child.id(), Some(&mut self.child));
    }
}

/// Stops the process group `pgid` (one a block was started in): SIGTERM, up to 5 s for it
/// to go, then SIGKILL. The group exists while one of its processes does, a zombie
/// included: `leader` (the group's bash, when not yet waited for) is reaped first.
fn stop_group(pgid: u32, leader: Option<&mut Child>) {
    let pgid = -(pgid as i32);
    // SAFETY: kill(2) on a process group this module created; no memory is involved.
    if unsafe { libc::kill(pgid, libc::SIGTERM) } != 0 {
        return;
    }
    if let Some(l) = leader {
        let _ = l.wait();
    }
    for _ in 0..50 {
        // SAFETY: as above; signal 0 only checks that the group still exists.
        if unsafe { libc::kill(pgid, 0) } != 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pgid, libc::SIGKILL) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(m: &str) -> Class {
        parse_marker(m).unwrap()
    }

    #[test]
    fn markers_parse_into_classes() {
        assert_eq!(
            class("example: run in vg0\n expect: lvm.vglet.io\n expect: b\n exit: 3\n check: lvs"),
            Class::Run {
                world: "vg0".into(),
                exit: 3,
                expect: vec!["lvm.vglet.io".into(), "b".into()],
                check: vec!["lvs".into()],
            }
        );
        assert_eq!(
            class("example: run in disks"),
            Class::Run {
                world: "disks".into(),
                exit: 0,
                expect: vec![],
                check: vec![]
            }
        );
        assert_eq!(
            class("example: serve in vg0\nready: test -S /run/vglet/csi.sock"),
            Class::Serve {
                world: "vg0".into(),
                ready: "test -S /run/vglet/csi.sock".into()
            }
        );
        assert_eq!(
            class("example: offline kubernetes"),
            Class::OfflineKubernetes
        );
        assert_eq!(
            class("example: not run: needs a Kubernetes cluster"),
            Class::NotRun("needs a Kubernetes cluster".into())
        );
        // Lines that do not start with a key continue the one before.
        assert_eq!(
            class("example: not run: needs a cluster\n  (see: x.md)\n"),
            Class::NotRun("needs a cluster (see: x.md)".into())
        );
        assert_eq!(
            class("example: run in w\ncheck: a &&\n  b\nexpect: c"),
            Class::Run {
                world: "w".into(),
                exit: 0,
                expect: vec!["c".into()],
                check: vec!["a && b".into()],
            }
        );
    }

    #[test]
    fn malformed_markers_are_refused_with_the_reason() {
        for (m, why) in [
            ("example: run", "unknown class"),
            ("example: run in", "name the world"),
            ("example: run in two words", "name the world"),
            ("example: not run:", "needs a reason"),
            ("example: serve in vg0", "exactly one `ready:`"),
            ("example: run in vg0\nexit: zero", "not a number"),
            ("example: run in vg0\nready: x", "does not belong"),
            ("example: not run: x\nexpect: y", "does not belong"),
            ("example: sometimes", "unknown class"),
            ("examples: run in vg0", "starts with"),
        ] {
            let e = parse_marker(m).unwrap_err();
            assert!(e.contains(why), "{m:?}: {e}");
        }
    }

    const DOC: &str = r#"# Title

<!-- example: run in vg0
     expect: ok -->
```sh
echo ok
```

```
unmarked diagram
```

<!-- example: not run: a sketch -->
text in between detaches the marker

```rust
fn f() {}
```

1. A step:

   <!-- example: not run: needs a cluster -->
   ```sh
   kubectl get pv
   ```

<!-- a plain comment -->

    indented block

<!-- example: run in -->
```sh
x
```
"#;

    #[test]
    fn every_block_is_found_with_its_marker_or_the_lack_of_one() {
        let ex = markdown_examples("doc.md", DOC);
        let got: Vec<_> = ex
            .iter()
            .map(|e| (e.origin.as_str(), e.lang.as_str(), e.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("doc.md:5", "sh", "echo ok\n"),
                ("doc.md:9", "", "unmarked diagram\n"),
                ("doc.md:16", "rust", "fn f() {}\n"),
                ("doc.md:23", "sh", "kubectl get pv\n"),
                ("doc.md:29", "", "indented block\n"),
                ("doc.md:32", "sh", "x\n"),
            ]
        );
        assert_eq!(
            ex[0].class,
            Ok(Class::Run {
                world: "vg0".into(),
                exit: 0,
                expect: vec!["ok".into()],
                check: vec![]
            })
        );
        for i in [1, 2, 4] {
            assert!(
                ex[i]
                    .class
                    .as_ref()
                    .unwrap_err()
                    .contains("no `<!-- example:"),
                "{:?}",
                ex[i]
            );
        }
        assert_eq!(ex[3].class, Ok(Class::NotRun("needs a cluster".into())));
        assert!(ex[5].class.as_ref().unwrap_err().contains("name the world"));
    }

    const HELP: &str = "Examples:\n  # A comment, dropped:\n  tool --a 1 \\\n      --b 2\n\n  \
VAR=x tool\n  tool --c\n\nSafety:\n  tool --not-an-example\n\nCommands:\n  one   First\n  \
two   Second, wrapped\n          over two lines\n  help  Print this\n\nUsage: tool\n";

    #[test]
    fn help_examples_are_command_lines_with_continuations_joined() {
        assert_eq!(
            help_examples(HELP),
            ["tool --a 1 --b 2", "VAR=x tool", "tool --c"]
        );
        assert_eq!(help_subcommands(HELP), ["one", "two"]);
        assert!(help_examples("Usage: tool\n\nOptions:\n  -h\n").is_empty());
    }

    #[test]
    fn markdown_files_skip_build_output_corpora_and_the_changelog() {
        let root = std::env::temp_dir().join(format!("vglet-md-{}", std::process::id()));
        for f in [
            "README.md",
            "CHANGELOG.md",
            "docs/a.md",
            "docs/b.txt",
            "target/x.md",
            "fuzz/README.md",
            "fuzz/corpus/t/y.md",
            ".git/z.md",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let found = markdown_files(&root);
        std::fs::remove_dir_all(&root).unwrap();
        let want: Vec<PathBuf> = ["README.md", "docs/a.md", "fuzz/README.md"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(found, want);
    }

    #[test]
    fn runs_report_exit_output_and_mismatches() {
        let scratch = std::env::temp_dir().join(format!("vglet-ex-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).unwrap();
        let sh = Shell {
            cwd: scratch.clone(),
            env: vec![("GREETING".into(), "hello".into())],
            scratch: scratch.clone(),
        };
        let limit = Duration::from_secs(20);
        let ok = sh.run("echo \"$GREETING\"; echo warn >&2", limit);
        assert_eq!(ok.code, 0);
        assert!(mismatches(&ok, 0, &["hello".into(), "warn".into()]).is_empty());
        // `-e`: a failing first line fails the block even when the last line succeeds.
        let broken = sh.run("false\necho hello", limit);
        assert_eq!(
            mismatches(&broken, 0, &["hello".into()]),
            ["exit 1 (want 0)", "output lacks \"hello\""]
        );
        // A background process does not keep run() waiting.
        let bg = sh.run("sleep 30 &\necho started", limit);
        assert!(bg.output.contains("started"));
        // A block that hangs is stopped, and fails.
        let hung = sh.run("echo waiting; sleep 30", Duration::from_millis(500));
        assert_eq!(hung.code, -1);
        assert!(hung.output.contains("waiting") && hung.output.contains("stopped"));
        let mut served = sh
            .serve(
                "echo up; exec sleep 30",
                "grep -q up \"$EXAMPLE_LOG\"",
                Duration::from_secs(20),
            )
            .unwrap();
        assert!(served.running());
        drop(served);
        let early = sh.serve("exit 7", "false", Duration::from_secs(20));
        assert!(early.unwrap_err().contains("exited"));
        std::fs::remove_dir_all(&scratch).unwrap();
    }
}
