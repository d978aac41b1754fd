// nativelib_cxx.cpp: C++ code in a namespace, for demangling tests.
#include <cstdlib>

namespace memtest
{
struct Pool {
    __attribute__((noinline)) static void *grab(std::size_t size)
    {
        void *p = std::malloc(size); // NL_CXX_GRAB
        __asm__ volatile("" ::: "memory");
        return p;
    }
};
} // namespace memtest

extern "C" void *nl_cxx_alloc(std::size_t size)
{
    void *p = memtest::Pool::grab(size); // NL_CXX_ENTRY
    __asm__ volatile("" ::: "memory");
    return p;
}
