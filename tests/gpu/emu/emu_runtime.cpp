// The emulated CUDA runtime's globals (ov/cuda_runtime.h declares them), linked into every
// emulation binary: the thread and block indices, the launch counters, the device the emulated
// engine sees, and the CUDA-error hook of runtime/error.hpp.
#include <cuda_runtime.h>

#include <stdexcept>

#include "runtime/device.hpp"
#include "runtime/error.hpp"

thread_local dim3 threadIdx, blockIdx;

#if defined(__x86_64__)
// emu_switch(save_sp, load_sp) (ov/emu_fiber.h): pushes the callee-saved registers, MXCSR and the
// x87 control word, stores the stack pointer in *save_sp, continues on load_sp's stack (a context
// emu_switch left, or one make_context built) and returns there. System V: rdi, rsi.
asm(R"(
    .text
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");
#endif
dim3 blockDim, gridDim;
long long g_emu_launches = 0;
long long g_emu_stream_syncs = 0;

namespace mnist {

int g_emu_captures = 0, g_emu_replays = 0;

DeviceInfo query_device() {
  DeviceInfo i;
  i.available = true;
  i.count = 1;
  i.name = "emu";
  return i;
}

namespace detail {
void throw_cuda(cudaError_t, const char* expr, const char* file, int line) {
  throw std::runtime_error(cat("cuda ", expr, file, line));
}
}  // namespace detail

}  // namespace mnist
