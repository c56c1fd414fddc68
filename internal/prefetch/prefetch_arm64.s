#include "textflag.h"

// func LinesFrom(addr unsafe.Pointer, offset uintptr, n int, stride uintptr)
TEXT ·LinesFrom(SB), NOSPLIT|NOFRAME, $0-32
	MOVD addr+0(FP), R0
	MOVD offset+8(FP), R3
	ADD R3, R0, R0
	MOVD n+16(FP), R1
	MOVD stride+24(FP), R2
	CMP $0, R1
	BLE done
loop:
	PRFM (R0), PLDL1KEEP
	ADD R2, R0, R0
	SUB $1, R1, R1
	CBNZ R1, loop
done:
	RET
