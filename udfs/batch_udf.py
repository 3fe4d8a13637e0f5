"""One `text -> value` column function from an Arrow kernel, with a pandas fallback.

PySpark 4.1+ has Arrow UDFs: the batch arrives as a pyarrow Array, with no pandas conversion
(the zstd and fastText scorers ran 25-30% faster that way here). Older PySpark gets a pandas UDF
that calls the kernel's pandas form.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pyarrow as pa


def arrow_or_pandas_udf(
    return_type: str,
    on_arrow: Callable[[pa.Array], pa.Array],
    on_pandas: Callable[[pd.Series], pd.Series],
):
    try:
        from pyspark.sql.functions import arrow_udf
    except ImportError:
        from pyspark.sql.functions import pandas_udf

        @pandas_udf(return_type)
        def pandas_batch(values: pd.Series) -> pd.Series:
            return on_pandas(values)

        return pandas_batch

    @arrow_udf(return_type)
    def arrow_batch(values: pa.Array) -> pa.Array:
        return on_arrow(values)

    return arrow_batch
