//! glibc's malloc tuning, which it reads only when a process starts: commands that want it
//! run themselves again with it in their environment.
//!
//! By default glibc gives each thread that allocates its own heap arena, and memory freed
//! in one arena is reused only by its thread: in put's pipeline (a reading thread, sealing
//! workers, a writer) each arena keeps its own high-water mark of chunk buffers. One arena
//! took the peak RSS of `put -r /usr/share` from about 154 MB to 110 MB (about 5% slower),
//! of a 539 MB file's put from 77 to 63 MB (bench/RESULTS.md). `get` is left alone: one arena
//! made restoring /usr/share about 9% slower for memory that was already low (97 -> 70 MB).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// glibc's variable for the number of heap arenas.
pub const ARENAS: &str = "MALLOC_ARENA_MAX";

/// Put's tuning: one heap arena, whose threads hand buffers to each other.
pub const PUT_TUNING: [(&str, &str); 1] = [(ARENAS, "1")];

/// `put -r`'s: one arena and fixed thresholds. glibc otherwise raises its mmap threshold to
/// the size of any mapped block freed (a chunker window of 8 MiB) and its trim threshold to
/// twice that, after which freed buffers of every size stay in the heap and its freed top
/// stays resident. Fixed just above the largest chunk (4 MiB + 64 KiB: glibc maps a block
/// of the threshold's size too), chunk, compression, slice and LMDB page buffers come from
/// the heap and are reused (only the chunker's window and the largest chunks' slice pages
/// are mapped), and at most 8 MiB of free heap is kept. A 512 KiB threshold (every
/// chunk-sized buffer mapped and faulted in afresh) peaked about 8 MB lower but cost 5-8% of
/// `put -r /usr/share`'s time in page faults (131k against 41k); at 4 MiB its peak, 81-91 MB
/// (RssAnon 69-78), stays under borg's 102 (89) (bench/RESULTS.md). A single put keeps glibc's thresholds: its peak
/// is bounded by its pipeline whatever the file's size (51-67 MB for a 539 MB file; borg's 80).
pub const TREE_TUNING: [(&str, &str); 3] = [
    (ARENAS, "1"),
    ("MALLOC_MMAP_THRESHOLD_", "4259840"),
    ("MALLOC_TRIM_THRESHOLD_", "8388608"),
];

/// Set by [`restart_with`] in the new process's environment. glibc removes the `MALLOC_*`
/// variables from a setuid, setgid or capability-holding program's environment at every
/// start (`AT_SECURE`): judged by those alone, such a put would restart itself forever.
pub const RESTARTED: &str = "OURO_MALLOC_RESTARTED";

/// Variables by which a user tunes malloc: any of them set is the user's choice, and put
/// runs as it was started.
const USER_CHOICES: [&str; 4] = [
    ARENAS,
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "GLIBC_TUNABLES",
];

/// True when this process started without any malloc setting of a user's, was not started
/// by an earlier pass, and can start itself again: restarting with tuning would change
/// something. Not when `/proc/self/exe` is another program than the command run (the
/// dynamic loader, `ld.so ouro put ...`), which would be handed our arguments as its own.
pub fn untuned() -> bool {
    // A
    std::env::var_os(RESTARTED).is_none()
        && USER_CHOICES.iter().all(|v| std::env::var_os(v).is_none())
        && match (std::env::current_exe(), std::env::args_os().next()) {
            (Ok(exe), Some(arg0)) => same_file(&exe, &arg0),
            _ => false,
        }
}

/// True when `arg0` (a path, or a name found on `PATH`) names the file `exe`.
fn same_file(exe: &Path, arg0: &OsStr) -> bool {
    // A
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let Some(want) = id(exe) else {
        return false;
    };
    let named = Path::new(arg0);
    if arg0.as_bytes().contains(&b'/') {
        return id(named) == Some(want);
    }
    std::env::var_os("PATH")
        .is_some_and(|dirs| std::env::split_paths(&dirs).any(|d| id(&d.join(named)) == Some(want)))
}

/// Replaces this process by the same command with `tuning` added to its environment.
/// Returns only when that failed (the executable is gone, say), with the error.
pub fn restart_with(tuning: &[(&str, &str)]) -> std::io::Error {
    // A
    match std::env::current_exe() {
        Ok(exe) => std::os::unix::process::CommandExt::exec(
            Command::new(exe)
                .args(std::env::args_os().skip(1))
                .envs(tuning.iter().copied())
                .env(RESTARTED, "1"),
        ),
        Err(e) => e,
    }
}
