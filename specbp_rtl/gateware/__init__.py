"""Gateware: the trainer's hardware blocks, one ``wiring.Component`` per concept.

Each block documents its parameters, ports, latency and throughput, and names
its numpy model (a function of :mod:`specbp_rtl.model.golden`) that it must
match bit for bit.
"""
