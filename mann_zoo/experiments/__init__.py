"""What runs many trainings and reads their results: benchmark grids (``grid``, ``benchmark``), the results
table (``results``), the write-up's figures and tables (``report``, ``diagnosis``), cost per step (``cost``,
``speed``) and the addressing analysis (``analysis``)."""
