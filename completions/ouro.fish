# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_ouro_global_optspecs
    string join \n store= identity= json q/quiet v/verbose h/help V/version
end

function __fish_ouro_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_ouro_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_ouro_using_subcommand
    set -l cmd (__fish_ouro_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c ouro -n "__fish_ouro_needs_command" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_needs_command" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_needs_command" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_needs_command" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_needs_command" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ouro -n "__fish_ouro_needs_command" -s V -l version -d 'Print version'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "init" -d 'Create a store in a new or empty directory (and an identity when none exists)'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "put" -d 'Store FILE (or stdin) as a new version of KEY; with -r, store directory DIR under PREFIX'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "get" -d 'Write a version\'s content to stdout or a file; with -r, restore PREFIX into DIR'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "snapshots" -d 'List snapshots (runs of put -r), oldest first'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "diff" -d 'Show what changed between two snapshots (default: the last two of the prefix)'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "forget" -d 'Remove snapshots of PREFIX that no --keep rule keeps (then `ouro gc` frees their data)'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "log" -d 'Show history, newest first'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "heads" -d 'List the current heads of KEY'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "merge" -d 'Resolve several heads into one version'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "rm" -d 'Remove a key (all versions) or one version (KEY@HASH)'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "ls" -d 'List keys'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "verify" -d 'Check every slice, chunk and version; with an identity, decrypt the content too'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "gc" -d 'Reclaim space of removed versions and unreferenced chunks'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "stats" -d 'Show sizes and ratios, and what an interrupted put left until gc (chunks no version uses, slices not yet recorded)'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "mount" -d 'Mount the store with FUSE: keys as files, versions under .ouro/ (see ouro-mount(1))'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "umount" -d 'Unmount a store mounted with `ouro mount` (lazily: open files stay readable until closed)'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "recipient" -d 'Manage who can read the store (age recipients)'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "cluster" -d 'Create a cluster, invite or remove nodes, show its status'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "node" -d 'Run this store\'s cluster node'
complete -c ouro -n "__fish_ouro_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ouro -n "__fish_ouro_using_subcommand init" -l ec -d 'Erasure code: K data + M parity slices per chunk' -r
complete -c ouro -n "__fish_ouro_using_subcommand init" -l recipient -d 'Extra age recipient who can read the store (repeatable)' -r
complete -c ouro -n "__fish_ouro_using_subcommand init" -l zstd-level -d 'zstd level for new chunks (1-19)' -r
complete -c ouro -n "__fish_ouro_using_subcommand init" -l chunk-size -d 'Average chunk size (K/M suffix); min is half, max four times it. Smaller chunks deduplicate small edits better at more metadata (README, "Chunk size")' -r
complete -c ouro -n "__fish_ouro_using_subcommand init" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand init" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand init" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand init" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand init" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand init" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand put" -l parent -d 'Parent version (repeatable): branch from it instead of the head' -r
complete -c ouro -n "__fish_ouro_using_subcommand put" -l exclude -d 'With -r: skip paths matching this glob (repeatable; `*.tmp`, `cache/**`)' -r
complete -c ouro -n "__fish_ouro_using_subcommand put" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand put" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand put" -s r -l recursive -d 'Store a directory tree, one key per regular file; unchanged files are skipped'
complete -c ouro -n "__fish_ouro_using_subcommand put" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand put" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand put" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand put" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand get" -s o -l output -d 'Output file instead of stdout: a regular file is replaced atomically (through a symlink, its target); a device or fifo (`/dev/null`) is written in place; a path inside the store\'s directory is refused' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand get" -l at -d 'With -r: the snapshot current at this RFC 3339 time or date (= PREFIX@TIME)' -r
complete -c ouro -n "__fish_ouro_using_subcommand get" -l include -d 'With -r: restore only paths matching this glob (repeatable) and what is under them' -r
complete -c ouro -n "__fish_ouro_using_subcommand get" -l exclude -d 'With -r: leave out paths matching this glob (repeatable)' -r
complete -c ouro -n "__fish_ouro_using_subcommand get" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand get" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand get" -s r -l recursive -d 'Restore a snapshot of PREFIX (made by put -r) into DIR, with its metadata'
complete -c ouro -n "__fish_ouro_using_subcommand get" -l delete -d 'With -r: remove what the snapshot lacks from DIR, so it ends up identical'
complete -c ouro -n "__fish_ouro_using_subcommand get" -l dry-run -d 'With -r: only list what would change'
complete -c ouro -n "__fish_ouro_using_subcommand get" -l numeric-owner -d 'With -r as root: restore owners by the recorded ids, not by user and group name'
complete -c ouro -n "__fish_ouro_using_subcommand get" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand get" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand get" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand get" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand snapshots" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand snapshots" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand snapshots" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand snapshots" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand snapshots" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand snapshots" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand diff" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand diff" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand diff" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand diff" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand diff" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand diff" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand forget" -l keep-last -d 'Keep the N newest snapshots' -r
complete -c ouro -n "__fish_ouro_using_subcommand forget" -l keep-hourly -d 'Keep the newest snapshot of each of the last N hours that have one' -r
complete -c ouro -n "__fish_ouro_using_subcommand forget" -l keep-daily -d 'Keep the newest snapshot of each of the last N days that have one' -r
complete -c ouro -n "__fish_ouro_using_subcommand forget" -l keep-weekly -d 'Keep the newest snapshot of each of the last N ISO weeks that have one' -r
complete -c ouro -n "__fish_ouro_using_subcommand forget" -l keep-monthly -d 'Keep the newest snapshot of each of the last N months that have one' -r
complete -c ouro -n "__fish_ouro_using_subcommand forget" -l keep-yearly -d 'Keep the newest snapshot of each of the last N years that have one' -r
complete -c ouro -n "__fish_ouro_using_subcommand forget" -l keep-within -d 'Keep every snapshot this recent, counted back from the newest (1y2m3d4h)' -r
complete -c ouro -n "__fish_ouro_using_subcommand forget" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand forget" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand forget" -l dry-run -d 'Only list what would be removed and why each kept snapshot is kept'
complete -c ouro -n "__fish_ouro_using_subcommand forget" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand forget" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand forget" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand forget" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand log" -s n -l max-count -d 'At most N versions' -r
complete -c ouro -n "__fish_ouro_using_subcommand log" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand log" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand log" -l oneline -d 'One line per version'
complete -c ouro -n "__fish_ouro_using_subcommand log" -l graph -d 'Draw parent links'
complete -c ouro -n "__fish_ouro_using_subcommand log" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand log" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand log" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand log" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand heads" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand heads" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand heads" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand heads" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand heads" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand heads" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand merge" -l pick -d 'Take the content of this version' -r
complete -c ouro -n "__fish_ouro_using_subcommand merge" -l file -d 'Take the content of this file (`-` for stdin)' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand merge" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand merge" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand merge" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand merge" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand merge" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand merge" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand rm" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand rm" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand rm" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand rm" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand rm" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand rm" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand ls" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand ls" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand ls" -s l -l long -d 'Long format: size, time, heads'
complete -c ouro -n "__fish_ouro_using_subcommand ls" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand ls" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand ls" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand ls" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand verify" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand verify" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand verify" -l repair -d 'Rebuild missing or damaged slices; remove index rows that name lost versions, a parent the child does not name, or a version already listed under its own key, and give a key whose head is lost the heads `rm KEY@V` would leave (else its newest live version)'
complete -c ouro -n "__fish_ouro_using_subcommand verify" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand verify" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand verify" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand verify" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand gc" -l compact -d 'Then rewrite the database file without its free pages, when at least PERCENT of it is free (10 when not given; 0: always). Needs the store to itself (stop its node and mounts first; puts started meanwhile wait) and free disk space for the copy (the size of the data it holds)' -r
complete -c ouro -n "__fish_ouro_using_subcommand gc" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand gc" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand gc" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand gc" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand gc" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand gc" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ouro -n "__fish_ouro_using_subcommand stats" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand stats" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand stats" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand stats" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand stats" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand stats" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ouro -n "__fish_ouro_using_subcommand mount" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand mount" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand mount" -l read-only -d 'Refuse every change (EROFS)'
complete -c ouro -n "__fish_ouro_using_subcommand mount" -l foreground -d 'Stay in the foreground until unmounted or interrupted (logs to stderr)'
complete -c ouro -n "__fish_ouro_using_subcommand mount" -l allow-other -d 'Let other users enter the mount, with each file\'s mode checked by the kernel (a normal user needs `user_allow_other` in /etc/fuse.conf)'
complete -c ouro -n "__fish_ouro_using_subcommand mount" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand mount" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand mount" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand mount" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand umount" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand umount" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand umount" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand umount" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand umount" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand umount" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and not __fish_seen_subcommand_from add ls rm help" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and not __fish_seen_subcommand_from add ls rm help" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and not __fish_seen_subcommand_from add ls rm help" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and not __fish_seen_subcommand_from add ls rm help" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and not __fish_seen_subcommand_from add ls rm help" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and not __fish_seen_subcommand_from add ls rm help" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and not __fish_seen_subcommand_from add ls rm help" -f -a "add" -d 'Let another age recipient read the whole store (no data is re-encrypted)'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and not __fish_seen_subcommand_from add ls rm help" -f -a "ls" -d 'List the recipients'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and not __fish_seen_subcommand_from add ls rm help" -f -a "rm" -d 'Stop a recipient from reading data written from now on (starts a new key epoch)'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and not __fish_seen_subcommand_from add ls rm help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from add" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from add" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from add" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from add" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from add" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from ls" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from ls" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from ls" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from ls" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from ls" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from rm" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from rm" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from rm" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from rm" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from rm" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from help" -f -a "add" -d 'Let another age recipient read the whole store (no data is re-encrypted)'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from help" -f -a "ls" -d 'List the recipients'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from help" -f -a "rm" -d 'Stop a recipient from reading data written from now on (starts a new key epoch)'
complete -c ouro -n "__fish_ouro_using_subcommand recipient; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and not __fish_seen_subcommand_from init invite status remove help" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and not __fish_seen_subcommand_from init invite status remove help" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and not __fish_seen_subcommand_from init invite status remove help" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and not __fish_seen_subcommand_from init invite status remove help" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and not __fish_seen_subcommand_from init invite status remove help" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and not __fish_seen_subcommand_from init invite status remove help" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and not __fish_seen_subcommand_from init invite status remove help" -f -a "init" -d 'Make this store the first node of a new cluster (creates the admin key)'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and not __fish_seen_subcommand_from init invite status remove help" -f -a "invite" -d 'Print a one-time join token for a new node (its last line of output)'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and not __fish_seen_subcommand_from init invite status remove help" -f -a "status" -d 'Show members, their state, and chunks not fully on live nodes'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and not __fish_seen_subcommand_from init invite status remove help" -f -a "remove" -d 'Revoke a node: its connections are cut and it is never accepted again'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and not __fish_seen_subcommand_from init invite status remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from init" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from init" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from init" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from init" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from init" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from init" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from invite" -l ttl -d 'How long the token stays valid (90s, 30m, 2h, 1d)' -r
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from invite" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from invite" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from invite" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from invite" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from invite" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from invite" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from status" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from status" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from status" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from status" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from status" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from remove" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from remove" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from remove" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from remove" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from help" -f -a "init" -d 'Make this store the first node of a new cluster (creates the admin key)'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from help" -f -a "invite" -d 'Print a one-time join token for a new node (its last line of output)'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show members, their state, and chunks not fully on live nodes'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Revoke a node: its connections are cut and it is never accepted again'
complete -c ouro -n "__fish_ouro_using_subcommand cluster; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ouro -n "__fish_ouro_using_subcommand node; and not __fish_seen_subcommand_from run backup restore help" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand node; and not __fish_seen_subcommand_from run backup restore help" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand node; and not __fish_seen_subcommand_from run backup restore help" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand node; and not __fish_seen_subcommand_from run backup restore help" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand node; and not __fish_seen_subcommand_from run backup restore help" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand node; and not __fish_seen_subcommand_from run backup restore help" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand node; and not __fish_seen_subcommand_from run backup restore help" -f -a "run" -d 'Run the node in the foreground (logs to stderr; stops cleanly on SIGTERM)'
complete -c ouro -n "__fish_ouro_using_subcommand node; and not __fish_seen_subcommand_from run backup restore help" -f -a "backup" -d 'Write a consistent copy of this store (and its node keys) into DEST, even while it runs'
complete -c ouro -n "__fish_ouro_using_subcommand node; and not __fish_seen_subcommand_from run backup restore help" -f -a "restore" -d 'Make --store (which must not exist) a store again from a backup; then `node run`'
complete -c ouro -n "__fish_ouro_using_subcommand node; and not __fish_seen_subcommand_from run backup restore help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from run" -l listen -d 'UDP address to listen on' -r
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from run" -l advertise -d 'Address other nodes should use (default: the listen address)' -r
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from run" -l join -d 'Join a cluster with a token from `ouro cluster invite` (creates the store); the environment variable keeps the token out of the process list' -r
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from run" -l repair-after -d 'Seconds a member may be silent before its slices are rebuilt on the others' -r
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from run" -l repair-rate -d 'MiB per second of slices this node may fetch to rebuild lost ones' -r
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from run" -l tombstone-horizon -d 'Seconds a silent member holds back the compaction of tombstones (rm records); a member away longer must be wiped and rejoin' -r
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from run" -l audit-every -d 'Seconds between two audits of a peer\'s slices against placement (a Merkle comparison whose traffic follows the difference; one peer in turn)' -r
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from run" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from run" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from run" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from run" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from run" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from backup" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from backup" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from backup" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from backup" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from backup" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from backup" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from restore" -l store -d 'Store directory [default: $XDG_DATA_HOME/ouro]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from restore" -l identity -d 'age identity file [default: $XDG_CONFIG_HOME/ouro/identity.txt]' -r -F
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from restore" -l json -d 'Print one JSON document on stdout'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from restore" -s q -l quiet -d 'No progress bars or informational messages'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from restore" -s v -l verbose -d 'More log output on stderr (-v, -vv)'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from restore" -s h -l help -d 'Print help'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from help" -f -a "run" -d 'Run the node in the foreground (logs to stderr; stops cleanly on SIGTERM)'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from help" -f -a "backup" -d 'Write a consistent copy of this store (and its node keys) into DEST, even while it runs'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from help" -f -a "restore" -d 'Make --store (which must not exist) a store again from a backup; then `node run`'
complete -c ouro -n "__fish_ouro_using_subcommand node; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "init" -d 'Create a store in a new or empty directory (and an identity when none exists)'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "put" -d 'Store FILE (or stdin) as a new version of KEY; with -r, store directory DIR under PREFIX'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "get" -d 'Write a version\'s content to stdout or a file; with -r, restore PREFIX into DIR'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "snapshots" -d 'List snapshots (runs of put -r), oldest first'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "diff" -d 'Show what changed between two snapshots (default: the last two of the prefix)'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "forget" -d 'Remove snapshots of PREFIX that no --keep rule keeps (then `ouro gc` frees their data)'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "log" -d 'Show history, newest first'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "heads" -d 'List the current heads of KEY'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "merge" -d 'Resolve several heads into one version'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "rm" -d 'Remove a key (all versions) or one version (KEY@HASH)'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "ls" -d 'List keys'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "verify" -d 'Check every slice, chunk and version; with an identity, decrypt the content too'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "gc" -d 'Reclaim space of removed versions and unreferenced chunks'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "stats" -d 'Show sizes and ratios, and what an interrupted put left until gc (chunks no version uses, slices not yet recorded)'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "mount" -d 'Mount the store with FUSE: keys as files, versions under .ouro/ (see ouro-mount(1))'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "umount" -d 'Unmount a store mounted with `ouro mount` (lazily: open files stay readable until closed)'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "recipient" -d 'Manage who can read the store (age recipients)'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "cluster" -d 'Create a cluster, invite or remove nodes, show its status'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "node" -d 'Run this store\'s cluster node'
complete -c ouro -n "__fish_ouro_using_subcommand help; and not __fish_seen_subcommand_from init put get snapshots diff forget log heads merge rm ls verify gc stats mount umount recipient cluster node help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ouro -n "__fish_ouro_using_subcommand help; and __fish_seen_subcommand_from recipient" -f -a "add" -d 'Let another age recipient read the whole store (no data is re-encrypted)'
complete -c ouro -n "__fish_ouro_using_subcommand help; and __fish_seen_subcommand_from recipient" -f -a "ls" -d 'List the recipients'
complete -c ouro -n "__fish_ouro_using_subcommand help; and __fish_seen_subcommand_from recipient" -f -a "rm" -d 'Stop a recipient from reading data written from now on (starts a new key epoch)'
complete -c ouro -n "__fish_ouro_using_subcommand help; and __fish_seen_subcommand_from cluster" -f -a "init" -d 'Make this store the first node of a new cluster (creates the admin key)'
complete -c ouro -n "__fish_ouro_using_subcommand help; and __fish_seen_subcommand_from cluster" -f -a "invite" -d 'Print a one-time join token for a new node (its last line of output)'
complete -c ouro -n "__fish_ouro_using_subcommand help; and __fish_seen_subcommand_from cluster" -f -a "status" -d 'Show members, their state, and chunks not fully on live nodes'
complete -c ouro -n "__fish_ouro_using_subcommand help; and __fish_seen_subcommand_from cluster" -f -a "remove" -d 'Revoke a node: its connections are cut and it is never accepted again'
complete -c ouro -n "__fish_ouro_using_subcommand help; and __fish_seen_subcommand_from node" -f -a "run" -d 'Run the node in the foreground (logs to stderr; stops cleanly on SIGTERM)'
complete -c ouro -n "__fish_ouro_using_subcommand help; and __fish_seen_subcommand_from node" -f -a "backup" -d 'Write a consistent copy of this store (and its node keys) into DEST, even while it runs'
complete -c ouro -n "__fish_ouro_using_subcommand help; and __fish_seen_subcommand_from node" -f -a "restore" -d 'Make --store (which must not exist) a store again from a backup; then `node run`'
