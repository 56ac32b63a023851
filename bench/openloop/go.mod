module passclear/bench/openloop

go 1.19
