# runtime/plan/: hardware profiles, activation traces, the placement planner, plan files, SVG.
runtime_libmtruntime_a_SOURCES += \
	runtime/plan/hwprofile.c runtime/plan/hwprofile.h \
	runtime/plan/svg.c runtime/plan/svg.h \
	runtime/plan/trace.c runtime/plan/trace.h \
	runtime/plan/planner.c runtime/plan/planner.h runtime/plan/plan_file.c
