// cuDNN softmax forward: the reference that tests and benchmarks compare cuda::softmax with.
// Built into its own library (mnist_cudnn_ref) so that only tests and benchmarks link libcudnn.
#pragma once

#include <cuda_runtime.h>
#include <cudnn.h>

namespace mnist::cudnn {

// probs [B,C] = row-wise softmax of logits [B,C]: CUDNN_SOFTMAX_ACCURATE (max-subtracted) over
// the C channels of a [B, C, 1, 1] NCHW tensor (CUDNN_SOFTMAX_MODE_INSTANCE).
void softmax(cudnnHandle_t h, float* probs, const float* logits, int B, int C, cudaStream_t stream);

}  // namespace mnist::cudnn
