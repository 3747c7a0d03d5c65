# specbp: link a Verilated trainer and the harness into one shared library.
#
# Run in Verilator's output directory (`verilator --cc ... --Mdir obj`) as
#   make -f ../build.mk LIB=libspecbp_trainer.so RUNTIME_DIR=<cache> OPT_FAST=... OPT_SLOW=... OPT_GLOBAL=...
# It reuses Verilator's own makefiles for every flag and file list, and replaces
# only the compile rules: no precompiled headers (for a handful of files they
# cost more than they save), position-independent code, waveform-dump code
# (run only inside a trace window) at OPT_TRACE instead of OPT_FAST, and the
# Verilator run-time objects (verilated.o, ...) taken from RUNTIME_DIR, compiled
# there once for every design built with the same tools and flags.

VM_DEFAULT_RULES = 0
include Vtrainer.mk

LIB ?= libspecbp_trainer.so
HARNESS_OBJS ?= trainer_harness.o
RUNTIME_DIR ?= runtime
OPT_TRACE ?= -O0
CPPFLAGS += -fPIC

TRACE_OBJS = $(addsuffix .o, $(filter $(VM_PREFIX)__Trace__%, $(VM_SUPPORT_FAST)))
MODEL_OBJS = $(filter-out $(TRACE_OBJS), $(VK_OBJS_FAST))

.PHONY: lib
lib: $(LIB)

$(MODEL_OBJS) $(HARNESS_OBJS): %.o: %.cpp
	$(CXX) $(OPT_FAST) $(CXXFLAGS) $(CPPFLAGS) -c -o $@ $<

$(TRACE_OBJS): %.o: %.cpp
	$(CXX) $(OPT_TRACE) $(CXXFLAGS) $(CPPFLAGS) -c -o $@ $<

$(VK_OBJS_SLOW): %.o: %.cpp
	$(CXX) $(OPT_SLOW) $(CXXFLAGS) $(CPPFLAGS) -c -o $@ $<

# Shared run-time objects: compiled into a temporary name, then renamed, so
# that concurrent builds never read half an object.
$(RUNTIME_DIR)/%.o: %.cpp
	@mkdir -p $(RUNTIME_DIR)
	$(CXX) $(OPT_GLOBAL) $(CXXFLAGS) $(CPPFLAGS) -c -o $@.$$$$.tmp $< && mv -f $@.$$$$.tmp $@; \
	  status=$$?; rm -f $@.$$$$.d; exit $$status

RUNTIME_OBJS = $(addprefix $(RUNTIME_DIR)/, $(VK_GLOBAL_OBJS))

$(LIB): $(HARNESS_OBJS) $(VK_OBJS_FAST) $(VK_OBJS_SLOW) $(RUNTIME_OBJS)
	$(LINK) -shared $(LDFLAGS) $^ $(LOADLIBES) $(LDLIBS) $(LIBS) -o $@
