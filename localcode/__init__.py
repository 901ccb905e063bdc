"""localcode: benchmark and run local LLMs as coding agents, in-process.

The import package has three parts that live in top-level folders of the repository:
``localcode`` (CLI, configuration, the agent), ``localcode.backends`` (inference) and
``localcode.harness`` (benchmark). Heavy dependencies (llama_cpp, mlx, docker, fastapi)
are imported lazily by the modules that need them.
"""

__version__ = "0.1.0"
