# Measurement only (issue 16 part 5, binning floor vs floor(+1e-6)): every Python process started with this
# folder on PYTHONPATH bins with the original code's plain floor (sjframe.data.binning.EDGE_TOLERANCE = 0).
import sjframe.data.binning as _b

_b.EDGE_TOLERANCE = 0.0
