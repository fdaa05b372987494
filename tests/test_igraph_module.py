"""igraph is loaded without matplotlib (start-up cost), and matplotlib still works afterwards."""
import subprocess
import sys

CODE = """
import sys
from linkage.graph.igraph_module import load_igraph
ig = load_igraph()
assert "matplotlib" not in sys.modules, "igraph pulled in matplotlib"
assert "matplotlib.pyplot" not in sys.modules
g = ig.Graph(n=3, edges=[(0, 1)])
assert g.connected_components().membership == [0, 0, 1]
import matplotlib
from matplotlib.figure import Figure
Figure()
assert load_igraph() is ig
print("ok")
"""


def test_load_igraph_skips_matplotlib_and_leaves_it_importable():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
