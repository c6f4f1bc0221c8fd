"""What needs both sides: teacher alignment, the closed loop, reports.

Imports point down only: the loop uses generators/, students/ and backends/; nothing
below imports it.
"""
