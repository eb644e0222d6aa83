module siem-recovery

go 1.26.0
