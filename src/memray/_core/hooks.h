/* hooks.h: interception of the allocator functions by patching the GOT slots
 * of every loaded ELF object (and of each one dlopen'ed while tracking), and
 * undoing it. The hooks call the real functions, resolved once when first
 * installed, and hand events to tracker.c. */
#ifndef MR_HOOKS_H
#define MR_HOOKS_H

/* Patches every loaded object except this extension and the dynamic loader.
 * 0 or -errno. */
int mr_hooks_install(void);

/* Points every patched slot back at the real function. */
void mr_hooks_uninstall(void);

/* In a forked child: the patch lock may have been held by a thread that does
 * not exist there; start over with a fresh one. */
void mr_hooks_after_fork_child(void);

#endif
