//! The `localstream` binary: everything lives in [`localstream_cli::app`].

fn main() -> std::process::ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    malloc::fixed_mmap_threshold();
    localstream_cli::app::main()
}

/// glibc's allocator, tuned once before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod malloc {
    /// Blocks of 128 KiB and more are mapped on their own and given back
    /// when freed, as glibc does by default until the first such block is
    /// freed; from then on it raises the threshold (up to 32 MiB) and keeps
    /// freed megabyte buffers in each thread's arena. With the socket, the
    /// writer, the committer and the walker each on a thread of their own,
    /// that kept 3-4 MiB per arena: the receiver of 100,000 small files
    /// peaked at 26-33 MiB RSS for a live heap of 6.5 MiB (heaptrack), and
    /// 21-23 MiB with the threshold fixed, at the same speed (big and small
    /// files). Setting it explicitly is what turns the raising off.
    const THRESHOLD: libc::c_int = 128 * 1024;

    pub(crate) fn fixed_mmap_threshold() {
        // SAFETY: mallopt only changes the allocator's parameters (it takes
        // the arenas' locks itself); it is called first thing in main, and a
        // refusal (0) leaves glibc's defaults, which are correct too.
        #[allow(unsafe_code)]
        let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) };
    }
}
