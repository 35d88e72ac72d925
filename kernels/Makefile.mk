# kernels/: CUDA kernels behind one C header, kernels/kernels.h.
EXTRA_DIST += kernels/kernels.h kernels/cuda_check.cuh kernels/ops.h kernels/common.cuh \
	kernels/gemv_core.cuh kernels/gemv_wave.cuh kernels/async_copy.cuh kernels/pdl.cuh \
	kernels/index_keys_split.cuh kernels/tensor_copy.cuh kernels/cublas_check.cuh
KERNEL_SOURCES = kernels/device.cu
KERNEL_SOURCES += kernels/bench.cu
KERNEL_SOURCES += kernels/host_copy.cu kernels/events.cu kernels/launch_times.cu
EXTRA_DIST += kernels/host_copy.h kernels/engine_ops.h kernels/events.h kernels/gemm.h \
	kernels/gemm_fp8.h kernels/graph.h kernels/launch_times.h
KERNEL_SOURCES += kernels/pdl.cu
KERNEL_SOURCES += kernels/arena.cu kernels/gemv.cu kernels/elementwise.cu kernels/router.cu \
	kernels/indexer.cu kernels/topk.cu kernels/mla.cu kernels/moe.cu kernels/moe_chunk.cu \
	kernels/engine_ops.cu kernels/gemm.cu kernels/moe_group.cu kernels/graph.cu \
	kernels/argmax.cu kernels/latent_fp8.cu kernels/gemm_fp8.cu
EXTRA_DIST += $(KERNEL_SOURCES)
if MT_HAVE_CUDA
noinst_LIBRARIES += kernels/libmtkernels.a
# cuBLAS is opened on first use, not linked (the file says why)
kernels_libmtkernels_a_SOURCES = $(KERNEL_SOURCES) kernels/cublas_lazy.c kernels/cublas_lazy.h
KERNEL_DEPS = $(KERNEL_SOURCES:.cu=.d)
endif
