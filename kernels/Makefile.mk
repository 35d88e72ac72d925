# kernels/: CUDA kernels behind one C header, kernels/kernels.h.
EXTRA_DIST += kernels/kernels.h kernels/cuda_check.cuh
KERNEL_SOURCES = kernels/device.cu
KERNEL_SOURCES += kernels/bench.cu
KERNEL_SOURCES += kernels/host_copy.cu
EXTRA_DIST += kernels/host_copy.h
EXTRA_DIST += $(KERNEL_SOURCES)
if MT_HAVE_CUDA
noinst_LIBRARIES += kernels/libmtkernels.a
kernels_libmtkernels_a_SOURCES = $(KERNEL_SOURCES)
KERNEL_DEPS = $(KERNEL_SOURCES:.cu=.d)
endif
