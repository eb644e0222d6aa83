// Command siem-recovery recovers the MCAS activities a SIEM never received.
package main

func main() {}
