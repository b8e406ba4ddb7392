"""The pure recipe core: recipe text in, a priced, validated plan out.

Reading YAML with positions (``yamlsrc``, ``loading``), the recipe model (``recipe``,
``checker``, ``fileaxes`` for axes that are sets of files), expansion (``matrix``,
``sweep``, ``combofilter`` for ``matrix.filter``), bounded templates (``render``,
``sandbox``, ``meter``, ``estimates``), the app's data and schema checks (``schemas``,
``validate``, ``fastschema``, ``localfiles``, ``imagecheck``), jobs and the plan (``jobs``,
``outnames``, ``planning``; the per-job loop in ``build``, compiled for plain templates by
``kernel`` and ``kernelcompile``), and the shared ``errors`` and ``money``.

May import: the standard library and third-party libraries only — no other layer of
kling_pipeline. No network, no writes; the only reads are recipe files, the folders a file
axis names, and reference images.
"""
