"""The text of the ``README`` file: a short guide to this tree (tracesim's own wording)."""
from __future__ import annotations

README = """\
tracing mini-HOWTO (tracesim: a simulated Linux 6.18 tracefs)

# echo 0 > tracing_on : stop recording into the ring buffer
# echo 1 > tracing_on : record again

 Files:
  trace\t\t\t- the buffer as text, with a header; does not consume
\t\t\t  'echo > trace' clears every CPU buffer
  trace_pipe\t\t- consuming read of the buffer; blocks until there is data
  trace_clock\t\t- the clock of the timestamps; the selected one is in brackets
  trace_marker\t\t- a write here becomes a tracing_mark_write event
  tracing_on\t\t- 0 or 1: whether events are recorded
  buffer_size_kb\t- size of each CPU buffer in KiB (per_cpu/cpuN/ for one CPU)
  buffer_total_size_kb\t- size of all CPU buffers together
  free_buffer\t\t- closing this file shrinks the buffers to their minimum
  current_tracer\t- the tracer in use; available_tracers lists them (nop)
  trace_options\t\t- options; 'noNAME' clears one; options/ has one file each
  tracing_cpumask\t- the CPUs that record (hex mask)
  error_log\t\t- the last errors of command files; 'echo > error_log' clears
  saved_cmdlines\t- the pid to task name map used in the trace
  saved_cmdlines_size\t- how many entries saved_cmdlines keeps
  instances/\t\t- mkdir NAME makes a trace array with its own buffers; rmdir removes it
  per_cpu/cpuN/\t\t- trace, trace_pipe, trace_pipe_raw, stats, buffer_size_kb of one CPU

 Events:
  available_events\t- every event as system:event
  set_event\t\t- enable events: 'echo sys:event > set_event' ('>' disables the others
\t\t\t  first, '>>' adds); '!sys:event' disables; '*' globs match
  events/\t\t- one directory per system and event
      enable\t\t- 0 or 1 (system and top enable read X when mixed)
      filter\t\t- a predicate on the event's fields, e.g. 'len > 100 && name == "lo"';
\t\t\t  '0' removes it
      format\t\t- the record layout and print format
      id\t\t- the event id
      trigger\t\t- traceon, traceoff, stacktrace, enable_event:sys:event,
\t\t\t  disable_event:sys:event, each with [:count] [if filter]; '!' removes

 Dynamic events:
  kprobe_events\t\t- p[:[GRP/]EVENT] SYM[+offs] [FETCHARGS] : a probe on a kernel function
\t\t\t  r[MAXACTIVE][:[GRP/]EVENT] SYM[+0] [FETCHARGS] : a return probe
\t\t\t  -:[GRP/]EVENT : delete
\t\t\t  fetchargs: %REG, @SYM[+|-offs], $stackN, $argN, $retval, $comm,
\t\t\t  +|-offs(FETCHARG), NAME=FETCHARG, FETCHARG:TYPE
\t\t\t  types: u8/16/32/64, s8/16/32/64, x8/16/32/64, string, symbol
  kprobe_profile\t- hits and misses of each probe
  dynamic_events\t- every dynamic event; accepts kprobe definitions too
"""
