//! The `outflow` program's jemalloc options (see its `main.rs` for why), so that the bench
//! measures what the program runs.

/// A C string that jemalloc reads at startup.
#[cfg(feature = "jemalloc")]
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a string literal, never written.
#[cfg(feature = "jemalloc")]
unsafe impl Sync for MallocConf {}

#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static malloc_conf: MallocConf =
    MallocConf(c"background_thread:true,dirty_decay_ms:50".as_ptr());
