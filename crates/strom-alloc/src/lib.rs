//! # strom-alloc
//!
//! [`GuardedAlloc`], the global allocator of the `strom` binary and of the end-to-end tests.
//!
//! Why it exists: the Kafka codec (`kafka-protocol` 0.18) reserves `Vec` capacity from an array
//! length read off the wire *before* it decodes the elements. A 14-byte request claiming
//! 2³¹−1 topics asks for ~150 GB; the system allocator refuses, and Rust aborts the whole process
//! on allocation failure — one hostile client would take every other client down with it.
//!
//! `GuardedAlloc` serves every request below [`HUGE`] from the system allocator unchanged. A
//! request of [`HUGE`] bytes or more is mapped with `mmap(MAP_NORESERVE)`: the kernel hands out
//! address space without committing memory, so the reservation succeeds, the decoder fails
//! cleanly when the bytes run out (a request cannot fill more than its frame), and the mapping is
//! returned untouched. Legitimate allocations never come near this size (requests are capped at
//! `socket.request.max.bytes`, 100 MiB by default).
//!
//! The unsafe code is confined to this crate: a `GlobalAlloc` implementation cannot be written
//! without it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::{self, NonNull};

/// Requests at least this large are mapped lazily instead of allocated (1 GiB).
pub const HUGE: usize = 1 << 30;

/// Largest alignment a fresh anonymous mapping is guaranteed to have.
const PAGE: usize = 4096;

/// The system allocator, except that huge requests get lazily committed anonymous mappings.
/// See the crate docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct GuardedAlloc;

fn is_huge(layout: Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

fn map(size: usize) -> *mut u8 {
    use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous};
    // SAFETY: an anonymous private mapping at a kernel-chosen address aliases nothing.
    let mapped = unsafe {
        mmap_anonymous(
            ptr::null_mut(),
            size,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        )
    };
    mapped.map_or(ptr::null_mut(), |p| p.cast())
}

fn unmap(ptr: *mut u8, size: usize) {
    if let Some(p) = NonNull::new(ptr) {
        // SAFETY: `ptr`/`size` are exactly a mapping made by `map` and not yet unmapped.
        let _ = unsafe { rustix::mm::munmap(p.as_ptr().cast(), size) };
    }
}

// SAFETY: small requests are forwarded to `System` with their layout unchanged; huge ones are
// page-aligned fresh mappings (alignment <= PAGE checked) released with the same size they were
// made with, since `dealloc` and `realloc` receive the original layout.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            map(layout.size()) // anonymous mappings are zero-filled
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(layout) {
            unmap(ptr, layout.size());
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        if !is_huge(layout) && !is_huge(new_layout) {
            // SAFETY: both sides are system allocations with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if is_huge(layout) && is_huge(new_layout) {
            // Move the mapping instead of copying it: a copy would commit every page.
            // SAFETY: `ptr`/`layout.size()` are exactly a live mapping made by `map`.
            let moved = unsafe {
                rustix::mm::mremap(
                    ptr.cast(),
                    layout.size(),
                    new_size,
                    rustix::mm::MremapFlags::MAYMOVE,
                )
            };
            return moved.map_or(ptr::null_mut(), |p| p.cast());
        }
        // SAFETY: `new_layout` has non-zero size (it is at least as large as a valid layout or
        // huge), and the copy stays within both blocks.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// Hands the memory the system allocator holds free back to the kernel, and says whether any
/// was released.
///
/// glibc's malloc keeps freed blocks for reuse, and under load its threshold for mapping large
/// blocks on their own rises to their size, so megabyte request and fetch buffers end up in
/// its heaps: after a burst the process keeps hundreds of megabytes it no longer uses.
/// `malloc_trim(0)` returns every free page of every heap (`MADV_DONTNEED`). It walks the
/// heaps, so call it now and then (the binary does every 30 s), not per request. Elsewhere
/// than glibc it does nothing.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: `malloc_trim` only takes the allocator's own locks; any thread may call it
        // at any time.
        unsafe { malloc_trim(0) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// How much freed memory glibc's heaps keep for reuse before giving it back on their own
/// (`M_TRIM_THRESHOLD`), once [`keep_freed_memory_until_trim`] is called (256 MiB).
pub const KEEP_FREED_BYTES: i32 = 256 << 20;

/// The largest block glibc serves from its heaps rather than mapping it on its own
/// (`M_MMAP_THRESHOLD`), once [`keep_freed_memory_until_trim`] is called: 32 MiB, the most
/// glibc accepts on 64-bit.
pub const HEAP_BLOCK_MAX_BYTES: i32 = 32 << 20;

/// Lets glibc's malloc keep freed memory for reuse until [`release_free_memory`] runs, instead
/// of returning it to the kernel on every large `free`. Call once at start-up, in a process
/// that calls [`release_free_memory`] periodically. Returns whether both settings took.
///
/// Why: by default glibc gives the free top of a heap back to the kernel as soon as it exceeds
/// twice the largest block freed so far. A Fetch over several partitions holds one read buffer
/// per partition (10 MiB each with librdkafka's common `max.partition.fetch.bytes`) until its
/// response is written; freeing them together leaves tens of MiB at the top of the heap, which
/// glibc returns at once, and the next response faults every page back in and has the kernel
/// zero it. Measured on a 6-partition fetch, page faults and page zeroing took about 30 % of
/// the broker's CPU and doubled its CPU per GB served (BENCHMARKS.md, issue 16). With the
/// memory kept until the periodic trim, the same buffers are reused. Fixing the mapping
/// threshold keeps buffers up to [`HEAP_BLOCK_MAX_BYTES`] in the heaps from the first request on,
/// rather than mapping (and unmapping) each until glibc's adaptive threshold has risen. Elsewhere
/// than glibc it does nothing and returns `false`.
pub fn keep_freed_memory_until_trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// glibc's `M_TRIM_THRESHOLD` (malloc.h).
        const M_TRIM_THRESHOLD: i32 = -1;
        /// glibc's `M_MMAP_THRESHOLD` (malloc.h).
        const M_MMAP_THRESHOLD: i32 = -3;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: `mallopt` takes the allocator's own lock and only changes its parameters;
        // both values are in the ranges glibc documents for these parameters.
        unsafe {
            mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES) == 1
                && mallopt(M_MMAP_THRESHOLD, HEAP_BLOCK_MAX_BYTES) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident pages of this process.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn resident_pages() -> usize {
        std::fs::read_to_string("/proc/self/statm")
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_heap_memory_goes_back_to_the_kernel() {
        const MIB: usize = 1 << 20;
        // Freeing one mapped 2 MiB block raises glibc's mapping threshold to 2 MiB, so the
        // 1 MiB blocks below come from the heap, as a broker's buffers do under load.
        drop(vec![1u8; 2 * MIB]);
        let baseline = resident_pages();
        // A small block after each large one: freed, the large ones are holes between live
        // blocks, which no heap shrinking returns; only a trim does.
        let (blocks, pins): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (0..256)
            .map(|i| (vec![i as u8; MIB], vec![7u8; 64]))
            .unzip();
        drop(blocks);
        let kept_mib = resident_pages().saturating_sub(baseline) * 4096 / MIB;
        assert!(
            kept_mib >= 16,
            "the allocator kept only {kept_mib} MiB: nothing to test"
        );
        assert!(release_free_memory());
        let left_mib = resident_pages().saturating_sub(baseline) * 4096 / MIB;
        assert!(
            left_mib <= kept_mib / 4,
            "{left_mib} of {kept_mib} MiB kept after the trim"
        );
        assert!(pins.iter().all(|p| p[63] == 7));
    }

    #[test]
    fn a_hostile_capacity_is_reserved_lazily_and_released() {
        // 2^31-1 elements of 72 bytes: what the codec asks for on a 14-byte Metadata request.
        let layout = Layout::from_size_align(72 * (i32::MAX as usize), 8).unwrap();
        let a = GuardedAlloc;
        // SAFETY: the layout has non-zero size; the block is written within bounds and freed
        // with the same layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            p.write(7);
            p.add(HUGE).write(9);
            assert_eq!((p.read(), p.add(HUGE).read()), (7, 9));
            let q = a.realloc(p, layout, layout.size() + 4096);
            assert!(!q.is_null());
            assert_eq!(q.add(HUGE).read(), 9);
            a.dealloc(q, Layout::from_size_align(layout.size() + 4096, 8).unwrap());
        }
    }

    #[test]
    fn small_requests_use_the_system_allocator() {
        let a = GuardedAlloc;
        let layout = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: valid non-zero layout, freed with the same layout after a resize.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(1, 100);
            let q = a.realloc(p, layout, 200);
            assert_eq!(q.add(99).read(), 1);
            a.dealloc(q, Layout::from_size_align(200, 8).unwrap());
        }
    }
}
