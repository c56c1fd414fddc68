#include "textflag.h"

// func Lines(addr unsafe.Pointer, n int, stride uintptr)
TEXT ·Lines(SB), NOSPLIT|NOFRAME, $0-24
	MOVQ addr+0(FP), AX
	MOVQ n+8(FP), CX
	MOVQ stride+16(FP), DX
	TESTQ CX, CX
	JLE done
loop:
	PREFETCHT0 (AX)
	ADDQ DX, AX
	DECQ CX
	JNZ loop
done:
	RET
