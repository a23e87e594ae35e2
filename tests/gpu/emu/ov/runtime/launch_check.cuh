#pragma once
#include "runtime/cuda_check.cuh"
#define MNIST_LAUNCH_CHECK(stream) ((void)(stream))
