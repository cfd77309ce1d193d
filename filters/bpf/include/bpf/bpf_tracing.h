/* Reading kprobe arguments from struct pt_regs (x86-64 SysV: di, si, dx, cx, r8, r9; ax = return). */
#ifndef __BPF_TRACING_H__
#define __BPF_TRACING_H__

#include <linux/ptrace.h>

#define PT_REGS_PARM1(x) ((x)->di)
#define PT_REGS_PARM2(x) ((x)->si)
#define PT_REGS_PARM3(x) ((x)->dx)
#define PT_REGS_PARM4(x) ((x)->cx)
#define PT_REGS_PARM5(x) ((x)->r8)
#define PT_REGS_PARM6(x) ((x)->r9)
#define PT_REGS_RET(x) ((x)->sp)
#define PT_REGS_FP(x) ((x)->bp)
#define PT_REGS_RC(x) ((x)->ax)
#define PT_REGS_SP(x) ((x)->sp)
#define PT_REGS_IP(x) ((x)->ip)

#endif /* __BPF_TRACING_H__ */
