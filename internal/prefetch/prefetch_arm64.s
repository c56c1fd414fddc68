#include "textflag.h"

// func Lines(addr unsafe.Pointer, n int, stride uintptr)
TEXT ·Lines(SB), NOSPLIT|NOFRAME, $0-24
	MOVD addr+0(FP), R0
	MOVD n+8(FP), R1
	MOVD stride+16(FP), R2
	CMP $0, R1
	BLE done
loop:
	PRFM (R0), PLDL1KEEP
	ADD R2, R0, R0
	SUB $1, R1, R1
	CBNZ R1, loop
done:
	RET
