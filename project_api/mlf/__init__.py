"""Model Library Format on the project side: reading archives (``reader``) and translating
legacy TVM 0.8-0.18 archives into our layout at project creation (``legacy``).

Importing this package (or ``project_api.mlf.reader``) loads neither project_api.compiler nor TVM.
"""
