//! Keeping the secrets this process holds (the password read from stdin,
//! refresh and access tokens) out of core dumps and debuggers.

/// Disables core dumps for the rest of the process: `RLIMIT_CORE` = 0 (soft
/// and hard, so nothing can raise it again) and, on Linux,
/// `PR_SET_DUMPABLE` = 0, which also covers dumps piped to a handler such
/// as systemd-coredump (they ignore `RLIMIT_CORE`) and stops processes of
/// the same user from attaching with ptrace or reading `/proc/<pid>/mem`.
///
/// Called first thing in `main`, before any secret is read. A failure is
/// reported (as a warning) but does not stop the command.
pub fn disable_core_dumps() -> Result<(), String> {
    #[cfg(all(
        unix,
        not(any(
            target_os = "espidf",
            target_os = "horizon",
            target_os = "redox",
            target_os = "vita"
        ))
    ))]
    {
        use rustix::process::{Resource, Rlimit, setrlimit};
        let none = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        setrlimit(Resource::Core, none)
            .map_err(|e| format!("could not set RLIMIT_CORE to 0: {e}"))?;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::process::{DumpableBehavior, set_dumpable_behavior};
        set_dumpable_behavior(DumpableBehavior::NotDumpable)
            .map_err(|e| format!("could not clear PR_SET_DUMPABLE: {e}"))?;
    }
    Ok(())
}
