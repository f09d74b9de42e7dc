//! `rackboot completions bash|zsh`, without the hidden flags and commands,
//! and the hidden `rackboot man` (the man page, roff, via `clap_mangen`).

use clap::ValueEnum;
use std::process::ExitCode;

/// The shells `completions` writes for.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum CompletionShell {
    Bash,
    Zsh,
}

/// `rackboot completions bash|zsh`: generated from the CLI definition `cmd`.
pub fn run(shell: CompletionShell, mut cmd: clap::Command) -> ExitCode {
    let sh = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
    };
    let mut buf = Vec::new();
    clap_complete::generate(sh, &mut cmd, "rackboot", &mut buf);
    print!("{}", strip_hidden(&String::from_utf8_lossy(&buf)));
    ExitCode::SUCCESS
}

/// `rackboot man`: the man page (section 1) generated from the CLI
/// definition; hidden commands and flags are left out by `clap_mangen`.
pub fn man(cmd: clap::Command) -> ExitCode {
    let mut buf = Vec::new();
    if let Err(e) = clap_mangen::Man::new(cmd).render(&mut buf) {
        eprintln!("error: rendering the man page: {e}");
        return ExitCode::from(1);
    }
    use std::io::Write;
    match std::io::stdout().write_all(&buf) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}

/// clap_complete offers hidden flags and commands too; drop the refusal-only
/// `--bmc-password` (bash: its `opts` token and `case` arm; zsh: its spec
/// line) and the benchmark command (bash: its `opts` token; zsh: its line).
fn strip_hidden(script: &str) -> String {
    const FLAG: &str = "--bmc-password";
    let mut out = String::with_capacity(script.len());
    let mut skip = 0;
    for line in script.split_inclusive('\n') {
        let t = line.trim();
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if t == format!("{FLAG})") {
            skip = 3; // COMPREPLY=..., return 0, ;;
            continue;
        }
        if t.starts_with(&format!("'{FLAG}=[")) || t.starts_with("'bench-add:") {
            continue;
        }
        if t.starts_with("opts=\"") {
            let kept: Vec<&str> = line
                .split(' ')
                .filter(|w| *w != FLAG && *w != "bench-add")
                .collect();
            out.push_str(&kept.join(" "));
            continue;
        }
        out.push_str(line);
    }
    out
}
