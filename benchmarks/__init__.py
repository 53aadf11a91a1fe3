from core.accelerators import cpu_unless_accelerators

cpu_unless_accelerators()  # before JAX is imported: a CPU machine runs quietly on the CPU
