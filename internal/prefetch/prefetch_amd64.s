#include "textflag.h"

// func LinesFrom(addr unsafe.Pointer, offset uintptr, n int, stride uintptr)
TEXT ·LinesFrom(SB), NOSPLIT|NOFRAME, $0-32
	MOVQ addr+0(FP), AX
	ADDQ offset+8(FP), AX
	MOVQ n+16(FP), CX
	MOVQ stride+24(FP), DX
	TESTQ CX, CX
	JLE done
loop:
	PREFETCHT0 (AX)
	ADDQ DX, AX
	DECQ CX
	JNZ loop
done:
	RET
