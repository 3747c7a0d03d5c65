// specbp Verilator harness: drives the Trainer's Verilog (top module `trainer`,
// Verilated with `--prefix Vtrainer`) and exports a small C API that
// specbp_rtl.sim.verilator calls through ctypes.
//
// Every call runs many cycles in C++ (a whole chunk of samples, a whole block
// of host-bus reads or writes), so Python is never in the per-cycle loop.
//
// Clocking: inputs are set, then `settle()` evaluates with clk low (outputs
// such as the sample stream's ready now reflect the new inputs), then `edge()`
// raises the clock. A stream beat transfers on the edge where valid and ready
// are both high, exactly like `await ctx.tick().until(ready)` in the Amaranth driver
// (sim/pysim.py), so cycle counts match the Amaranth simulator.
//
// Compile-time options (set by the Python builder):
//   SB_TRACE=0  no waveform support (default, fastest)
//   SB_TRACE=1  VCD (`--trace`),  SB_TRACE=2  FST (`--trace-fst`)

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "Vtrainer.h"
#include "verilated.h"

// Amaranth names interface members `sample__valid`, ...; Verilator escapes the
// double underscore of a port name as `___05F`.
#define PORT(group, member) group##___05F##member

#ifndef SB_TRACE
#define SB_TRACE 0
#endif
#if SB_TRACE == 1
#include "verilated_vcd_c.h"
typedef VerilatedVcdC SbTraceFile;
#elif SB_TRACE == 2
#include "verilated_fst_c.h"
typedef VerilatedFstC SbTraceFile;
#endif

namespace {

// Bit offsets of the stream payload fields, passed by Python (from the
// Amaranth StructLayouts) so that the harness does not hard-code them.
enum LayoutIndex {
    L_PIXEL, L_LABEL, L_INFER, L_EPOCH_START,   // sample payload
    L_PREDICTION, L_PRED_BITS, L_KIND, L_KIND_BITS, // result payload
    L_COUNT
};

struct Sim {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vtrainer> top;
    int32_t layout[L_COUNT];
    uint64_t cycles = 0;      // clock edges since reset
    uint64_t samples = 0;     // samples streamed since construction (the trace window's index)
    uint64_t max_wait = 0;    // watchdog: cycles a single handshake may wait
    int error = 0;            // sticky: 1 after a watchdog timeout
#if SB_TRACE
    std::unique_ptr<SbTraceFile> tfp;
    std::string trace_path;
    uint64_t trace_start = 0, trace_end = 0;
    bool tracing = false, trace_done = false, dumped = false;
    uint64_t last_dump = 0;
#endif

    void dump(uint64_t t) {
#if SB_TRACE
        if (!tracing) return;
        // Several settles in one cycle (e.g. a wait for idle, then a new beat): keep times increasing.
        if (dumped && t <= last_dump) t = last_dump + 1;
        tfp->dump(t);
        last_dump = t;
        dumped = true;
#else
        (void)t;
#endif
    }
    // Evaluate with the clock low after inputs changed (waveform time: 10 ns per cycle, as in pysim).
    void settle() {
        top->clk = 0;
        top->eval();
        dump(10 * cycles);
    }
    // Rising edge.
    void edge() {
        top->clk = 1;
        top->eval();
        dump(10 * cycles + 5);
        ++cycles;
    }
    void trace_sample_boundary() {
#if SB_TRACE
        if (trace_done || trace_path.empty()) return;
        if (!tracing && samples >= trace_start && samples < trace_end) {
            if (!tfp) {
                tfp.reset(new SbTraceFile);
                top->trace(tfp.get(), 99);
                tfp->open(trace_path.c_str());
            }
            tracing = true;
        } else if (tracing && samples >= trace_end) {
            close_trace();
        }
#endif
    }
    void close_trace() {
#if SB_TRACE
        if (tfp) {
            tfp->close();
            tfp.reset();
        }
        tracing = false;
        trace_done = true;
#endif
    }
};

}  // namespace

extern "C" {

// Trace support compiled in: 0 none, 1 VCD, 2 FST.
int sb_trace_kind() { return SB_TRACE; }

// A new model, reset for one cycle. `layout` holds L_COUNT integers (see LayoutIndex).
// `trace_path` may be NULL or empty; samples [trace_start, trace_start + trace_count)
// of the streaming order are written to it when tracing is compiled in.
void* sb_new(const int32_t* layout, uint64_t max_wait, const char* trace_path, uint64_t trace_start,
             uint64_t trace_count) {
    Sim* s = new Sim;
    s->ctx.reset(new VerilatedContext);
    s->ctx->randReset(0);  // any variable without an initial value starts at zero
#if SB_TRACE
    s->ctx->traceEverOn(true);
    if (trace_path) s->trace_path = trace_path;
    s->trace_start = trace_start;
    s->trace_end = trace_start + trace_count;
#else
    (void)trace_path;
    (void)trace_start;
    (void)trace_count;
#endif
    s->top.reset(new Vtrainer{s->ctx.get(), "trainer"});
    std::memcpy(s->layout, layout, sizeof(s->layout));
    s->max_wait = max_wait;
    Vtrainer* t = s->top.get();
    t->PORT(sample, valid) = 0;
    t->PORT(sample, payload) = 0;
    t->PORT(result, ready) = 1;
    t->PORT(host, we) = 0;
    t->PORT(host, re) = 0;
    t->PORT(host, addr) = 0;
    t->PORT(host, wdata) = 0;
    t->rst = 1;
    s->settle();
    s->edge();
    t->rst = 0;
    s->cycles = 0;
    return s;
}

void sb_free(void* handle) {
    Sim* s = static_cast<Sim*>(handle);
    if (!s) return;
    s->close_trace();
    s->top->final();
    delete s;
}

uint64_t sb_cycles(void* handle) { return static_cast<Sim*>(handle)->cycles; }

int sb_error(void* handle) { return static_cast<Sim*>(handle)->error; }

// Flush and close the waveform (it also closes by itself after the window).
void sb_close_trace(void* handle) { static_cast<Sim*>(handle)->close_trace(); }

// Run clock cycles until the trainer's FSM is idle. Returns 0, or -1 on timeout.
int sb_wait_idle(void* handle) {
    Sim* s = static_cast<Sim*>(handle);
    Vtrainer* t = s->top.get();
    for (uint64_t n = 0;; ++n) {
        s->settle();
        if (t->idle) return 0;
        if (n >= s->max_wait) {
            s->error = 1;
            return -1;
        }
        s->edge();
    }
}

// Stream `n` samples of `inputs` bytes each (row-major `x`, labels `y`), one
// pixel per beat, and consume one result beat per sample. `epoch_start` flags
// the first beat of the first sample. Writes the prediction and the step kind of
// each sample into `prediction` and `kind` (either may be NULL). Returns the
// number of cycles run, or -1 on a watchdog timeout.
int64_t sb_stream(void* handle, const uint8_t* x, const uint8_t* y, int64_t n, int32_t inputs, int32_t infer,
                  int32_t epoch_start, uint8_t* prediction, uint8_t* kind) {
    Sim* s = static_cast<Sim*>(handle);
    Vtrainer* t = s->top.get();
    const int32_t* L = s->layout;
    const uint64_t start = s->cycles;
    const uint32_t pred_mask = (1u << L[L_PRED_BITS]) - 1u, kind_mask = (1u << L[L_KIND_BITS]) - 1u;
    t->PORT(result, ready) = 1;
    for (int64_t i = 0; i < n; ++i) {
        s->trace_sample_boundary();
        const uint8_t* row = x + i * static_cast<int64_t>(inputs);
        const uint32_t label = infer ? 0u : static_cast<uint32_t>(y[i]);
        const uint32_t common = (label << L[L_LABEL]) | (static_cast<uint32_t>(infer != 0) << L[L_INFER]);
        for (int32_t j = 0; j < inputs; ++j) {
            uint32_t payload = common | (static_cast<uint32_t>(row[j]) << L[L_PIXEL]);
            if (epoch_start && i == 0 && j == 0) payload |= 1u << L[L_EPOCH_START];
            t->PORT(sample, payload) = payload;
            t->PORT(sample, valid) = 1;
            for (uint64_t w = 0;; ++w) {
                s->settle();
                const bool ready = t->PORT(sample, ready);
                s->edge();
                if (ready) break;
                if (w >= s->max_wait) {
                    s->error = 1;
                    return -1;
                }
            }
        }
        t->PORT(sample, valid) = 0;
        for (uint64_t w = 0;; ++w) {
            s->settle();
            const bool valid = t->PORT(result, valid);
            const uint32_t payload = static_cast<uint32_t>(t->PORT(result, payload));
            s->edge();
            if (valid) {
                if (prediction) prediction[i] = static_cast<uint8_t>((payload >> L[L_PREDICTION]) & pred_mask);
                if (kind) kind[i] = static_cast<uint8_t>((payload >> L[L_KIND]) & kind_mask);
                break;
            }
            if (w >= s->max_wait) {
                s->error = 1;
                return -1;
            }
        }
        ++s->samples;
    }
    s->trace_sample_boundary();
    return static_cast<int64_t>(s->cycles - start);
}

// `n` host-bus writes, one per cycle (the trainer must be idle).
void sb_host_write(void* handle, const uint32_t* addr, const uint32_t* data, int64_t n) {
    Sim* s = static_cast<Sim*>(handle);
    Vtrainer* t = s->top.get();
    for (int64_t i = 0; i < n; ++i) {
        t->PORT(host, we) = 1;
        t->PORT(host, addr) = addr[i];
        t->PORT(host, wdata) = data[i];
        s->settle();
        s->edge();
    }
    t->PORT(host, we) = 0;
}

// `n` host-bus reads, pipelined: one request per cycle, each answered with
// `rvalid` five cycles later (the trainer must be idle). Returns 0, or -1 when
// an answer is missing.
int sb_host_read(void* handle, const uint32_t* addr, uint32_t* out, int64_t n) {
    Sim* s = static_cast<Sim*>(handle);
    Vtrainer* t = s->top.get();
    int64_t got = 0;
    for (int64_t i = 0; i < n + 8 && got < n; ++i) {
        t->PORT(host, re) = i < n;
        t->PORT(host, addr) = i < n ? addr[i] : 0u;
        s->settle();
        if (t->PORT(host, rvalid)) out[got++] = static_cast<uint32_t>(t->PORT(host, rdata));
        s->edge();
    }
    t->PORT(host, re) = 0;
    return got == n ? 0 : -1;
}

}  // extern "C"
