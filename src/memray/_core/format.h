/* format.h: the capture format, the one contract between the tracked process
 * (writer) and the analysis process (reader). Only this header knows the bytes
 * on disk; docs/format.rst describes the same layout in prose. It holds no
 * state and no I/O: constants, the fixed header layout and varint helpers. */
#ifndef MR_FORMAT_H
#define MR_FORMAT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* "MRYCAP" plus two bytes that no text file starts with. */
#define MR_MAGIC "MRYCAP\x00\x02"
#define MR_MAGIC_LEN 8
#define MR_FORMAT_VERSION 1

/* A zstd frame starts with these bytes; a capture compressed on exit is one
 * zstd frame holding the plain capture. */
#define MR_ZSTD_MAGIC "\x28\xb5\x2f\xfd"

/* Fixed header, little-endian, MR_HEADER_SIZE bytes, then command_line_len
 * bytes of command line, then records. */
#define MR_HEADER_SIZE 48
enum {
    MR_HOFF_MAGIC = 0,          /* char[8] */
    MR_HOFF_VERSION = 8,        /* u16 */
    MR_HOFF_FLAGS = 10,         /* u16, MR_FLAG_* */
    MR_HOFF_PYALLOC = 12,       /* u8, MR_PYALLOC_* */
    MR_HOFF_PID = 16,           /* u32 */
    MR_HOFF_MAIN_TID = 20,      /* u32 */
    MR_HOFF_START_MS = 24,      /* u64, unix time in ms */
    MR_HOFF_PY_HEXVERSION = 32, /* u32, PY_VERSION_HEX of the tracked Python */
    MR_HOFF_INTERVAL_MS = 36,   /* u32, memory_interval_ms */
    MR_HOFF_CMDLINE_LEN = 40,   /* u32 */
    MR_HOFF_PARENT_PID = 44,    /* u32, pid of the tracked process this one descends
                                 * from (follow_fork/follow_children), 0: none;
                                 * zero (reserved) in older captures */
};

#define MR_FLAG_NATIVE 0x1u     /* ALLOC records carry a native stack id */
#define MR_FLAG_PYALLOC 0x2u    /* pymalloc domains were traced */
#define MR_FLAG_AGGREGATED 0x4u /* FileFormat.AGGREGATED_ALLOCATIONS */
/* Made by `memray merge` from captures of several processes: PROCESS records
 * say which process the records that follow belong to (merge.h). */
#define MR_FLAG_MERGED 0x8u
/* Sampled allocations (Tracker(sample_every=N)): the first record is an EXT
 * of kind MR_EXT_SAMPLING holding N. */
#define MR_FLAG_SAMPLED 0x10u
#define MR_FLAGS_KNOWN 0x1Fu

enum mr_pyalloc {
    MR_PYALLOC_PYMALLOC = 0,
    MR_PYALLOC_PYMALLOC_DEBUG = 1,
    MR_PYALLOC_MALLOC = 2,
    MR_PYALLOC_OTHER = 3,
};

/* AllocatorType values, identical to the public IntEnum. */
enum mr_allocator {
    MR_PYMALLOC_FREE = 1,
    MR_PYMALLOC_MALLOC = 2,
    MR_PYMALLOC_CALLOC = 3,
    MR_PYMALLOC_REALLOC = 4,
    MR_FREE = 5,
    MR_MALLOC = 6,
    MR_REALLOC = 7,
    MR_CALLOC = 8,
    MR_POSIX_MEMALIGN = 9,
    MR_ALIGNED_ALLOC = 10,
    MR_MEMALIGN = 11,
    MR_VALLOC = 12,
    MR_PVALLOC = 13,
    MR_MMAP = 14,
    MR_MUNMAP = 15,
};

static inline int mr_allocator_is_free(unsigned a)
{
    return a == MR_FREE || a == MR_MUNMAP || a == MR_PYMALLOC_FREE;
}

/* Records. Each starts with a tag byte: low nibble the type, high nibble an
 * argument (the allocator for ALLOC/FREE, flags for MEMORY). Ids of CODE,
 * FRAME, NODE and NATIVE_NODE records are implicit: the n-th record of a
 * type defines id n, counting from 1 (0 means "none"/"root").
 *
 *  ZERO        end of the written data (a file sink grows in zero-filled
 *              steps; a killed process leaves zeros after its last record)
 *  ALLOC       arg=allocator; svarint address delta; uvarint size;
 *              svarint python stack (NODE id) delta; if MR_FLAG_NATIVE:
 *              svarint native stack (NATIVE_NODE id) delta
 *  FREE        arg=allocator (FREE, MUNMAP, PYMALLOC_FREE); svarint address
 *              delta; MUNMAP only: uvarint length
 *  THREAD      uvarint tid: the records that follow were made by this thread
 *  CODE        uvarint len + function name; uvarint len + file name;
 *              uvarint first line
 *  FRAME       uvarint code id; uvarint line
 *  NODE        uvarint parent NODE id (0 = outermost); uvarint FRAME id;
 *              arg bit 0 (MR_NODE_ENTRY): the frame is the first Python frame
 *              run by its interpreter loop call (hybrid stacks pair these
 *              with the native _PyEval_EvalFrameDefault frames)
 *  THREAD_NAME uvarint tid; uvarint len + name
 *  MEMORY      uvarint ms since start; uvarint rss bytes; if arg&1
 *              (MR_MEMORY_HAS_HEAP): uvarint heap bytes (aggregated captures:
 *              the reader cannot compute it); if arg&2 (MR_MEMORY_HAS_SPLIT):
 *              uvarint anonymous, uvarint file-backed, uvarint shared resident
 *              bytes (writers keep rss = their sum), uvarint heap bytes in
 *              mappings of files or shared memory (mr_mem_split_t)
 *  NATIVE_NODE uvarint parent NATIVE_NODE id; uvarint instruction pointer
 *  MAPPINGS    the loaded objects, written at start and after every dlopen
 *              or dlclose that changed them: uvarint generation (1, 2, ...:
 *              the native_segment_generation of the ALLOC records that follow);
 *              uvarint count; count x (uvarint len + path ("" = the main
 *              program), uvarint load bias, uvarint lowest and uvarint
 *              highest address of its PT_LOAD segments, uvarint len +
 *              build-id bytes (len 0: none))
 *  AGG         uvarint tid; uvarint allocator; uvarint stack; uvarint native
 *              stack; uvarint n at peak; uvarint bytes at peak; uvarint n
 *              leaked; uvarint bytes leaked
 *  PAD         uvarint n, then n bytes of any value: carries nothing. A live
 *              stream ends each flush with one when records were written, so
 *              a reader holding MR_READ_LOOKAHEAD bytes after a record can
 *              decode the newest one without waiting for more.
 *  TRAILER     uvarint ms since start at stop; uvarint total allocations;
 *              uvarint peak heap bytes; uvarint flags (bit0: recording
 *              failed mid-run and the capture stops early). Nothing follows.
 *  PROCESS     merged captures only (MR_FLAG_MERGED). arg=MR_PROCESS_DEFINE:
 *              defines the next process number (1, 2, ...) and switches to
 *              it: uvarint pid; uvarint parent pid; uvarint ms from the
 *              merged capture's start to the process's; uvarint
 *              PY_VERSION_HEX; uvarint len + command line. arg=0: uvarint
 *              process number, already defined: switches to it. The records
 *              that follow belong to that process; a switch resets the
 *              current thread to 0 and brings back the process's MAPPINGS
 *              generation. arg=MR_PROCESS_EXIT: uvarint process number: the
 *              process ended here (no switch): its blocks still alive leave
 *              the heap (and stay what it leaked). Addresses of process N
 *              carry N in bits 48-63 (MR_PROCESS_ADDR_SHIFT).
 *  EXT         arg=kind (MR_EXT_*); uvarint n; n bytes of the kind's body.
 *              Readers skip kinds they do not know (and bytes of a body
 *              beyond what they know of it): room for new records without a
 *              new format version. Kind 0 is corrupt.
 *
 * Address, stack and native deltas are against the previous record of the
 * whole stream (not per thread), starting from 0. */
enum mr_record_type {
    MR_REC_ZERO = 0x0,
    MR_REC_ALLOC = 0x1,
    MR_REC_FREE = 0x2,
    MR_REC_THREAD = 0x3,
    MR_REC_CODE = 0x4,
    MR_REC_FRAME = 0x5,
    MR_REC_NODE = 0x6,
    MR_REC_THREAD_NAME = 0x7,
    MR_REC_MEMORY = 0x8,
    MR_REC_NATIVE_NODE = 0x9,
    MR_REC_MAPPINGS = 0xA,
    MR_REC_AGG = 0xB,
    MR_REC_TRAILER = 0xC,
    MR_REC_PAD = 0xD,
    MR_REC_PROCESS = 0xE,
    MR_REC_EXT = 0xF,
    MR_REC_LAST = MR_REC_EXT, /* the highest kind a writer emits */
};

#define MR_TAG(type, arg) ((uint8_t)(((arg) << 4) | (type)))
#define MR_TAG_TYPE(tag) ((tag)&0x0F)
#define MR_TAG_ARG(tag) ((tag) >> 4)

#define MR_NODE_ENTRY 0x1u
#define MR_MEMORY_HAS_HEAP 0x1u
/* MEMORY carries mr_mem_split_t (the split of rss, the mapped heap) after
 * the heap. */
#define MR_MEMORY_HAS_SPLIT 0x2u
#define MR_MEMORY_KNOWN (MR_MEMORY_HAS_HEAP | MR_MEMORY_HAS_SPLIT)
#define MR_TRAILER_FAILED 0x1u
#define MR_PROCESS_DEFINE 0x1u
#define MR_PROCESS_EXIT 0x2u
#define MR_PROCESS_ADDR_SHIFT 48

/* What a MEMORY record with MR_MEMORY_HAS_SPLIT adds, in bytes. The resident
 * set split by what backs it (rss == anon + file + shmem), the kernel's
 * RssAnon, RssFile and RssShmem (procmem.h): anon, private anonymous pages
 * (malloc'd memory, stacks, copy-on-write copies of file pages); file, pages
 * of mapped files (code of the program and its libraries, mmap'd files);
 * shmem, shared memory (tmpfs and /dev/shm files, SysV shm,
 * MAP_SHARED|MAP_ANONYMOUS mappings). And mapped: the part of the heap that
 * is mmap allocations of files or shared memory, alive at the sample, whose
 * pages are resident (if at all) as file or shmem, not anon. */
typedef struct mr_mem_split {
    uint64_t anon, file, shmem;
    uint64_t mapped;
} mr_mem_split_t;

/* EXT kinds (the tag argument). */
enum mr_ext_kind {
    /* uvarint sample_every: allocations were sampled, each byte with
     * probability 1/sample_every (mr_sample_weight). Only as the first
     * record, with MR_FLAG_SAMPLED. */
    MR_EXT_SAMPLING = 1,
};

/* Sampled captures: an allocation of size bytes is recorded with
 * probability 1 - exp(-size / every) (a Poisson process over bytes, one per
 * `every` bytes on average); the bytes it stands for, unbiased, are size
 * divided by that probability. Allocations by mmap are never sampled (weight
 * 1). Returns the estimate rounded to a byte. */
static inline uint64_t mr_sample_weight(uint64_t size, uint64_t every)
{
    if (every <= 1 || size == 0)
        return size;
    double p = -expm1(-(double)size / (double)every);
    double est = (double)size / p + 0.5;
    return est >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)est;
}

/* The reader asks for this many bytes before decoding each record (more than
 * the longest fixed-size record, AGG: a tag and 8 varints, 81 bytes). */
#define MR_READ_LOOKAHEAD 96

/* Longest string the reader accepts (names, paths, command lines). */
#define MR_MAX_STRING (1u << 20)
/* Largest varint: 10 bytes for 64 bits. */
#define MR_VARINT_MAX 10

/* Encoders write at p (room for MR_VARINT_MAX bytes) and return the new end. */
static inline uint8_t *mr_put_uvarint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static inline uint64_t mr_zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t mr_unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static inline uint8_t *mr_put_svarint(uint8_t *p, int64_t v)
{
    return mr_put_uvarint(p, mr_zigzag(v));
}

/* Decoders read from [*p, end); on success advance *p and return 0, on a
 * truncated or overlong varint return -1 and leave *p alone. */
static inline int mr_get_uvarint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    const uint8_t *q = *p;
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (q >= end)
            return -1;
        uint8_t b = *q++;
        if (shift == 63 && b > 1)
            return -1;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *p = q;
            *out = v;
            return 0;
        }
    }
    return -1;
}

static inline int mr_get_svarint(const uint8_t **p, const uint8_t *end, int64_t *out)
{
    uint64_t u;
    if (mr_get_uvarint(p, end, &u) < 0)
        return -1;
    *out = mr_unzigzag(u);
    return 0;
}

static inline void mr_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void mr_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void mr_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t mr_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t mr_get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static inline uint64_t mr_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#endif
