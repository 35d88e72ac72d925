# runtime/plan/: hardware profiles, activation traces, the placement planner (cost model, search,
# plan build), plan files, SVG.
runtime_libmtruntime_a_SOURCES += \
	runtime/plan/hwprofile.c runtime/plan/hwprofile.h \
	runtime/plan/svg.c runtime/plan/svg.h \
	runtime/plan/trace.c runtime/plan/trace.h \
	runtime/plan/planner.h runtime/plan/planner_int.h runtime/plan/planner_cost.c \
	runtime/plan/planner_search.c runtime/plan/planner.c runtime/plan/plan_file.c \
	runtime/plan/gpu_work.c runtime/plan/gpu_prefill.c
