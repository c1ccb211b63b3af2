import pandas as pd
from digitalhub_runtime_python import handler

KEYS = [
    "codice spira",
    "longitudine",
    "latitudine",
    "Livello",
    "tipologia",
    "codice",
    "codice arco",
    "codice via",
    "Nome via",
    "stato",
    "direzione",
    "angolo",
    "geopoint",
]


@handler(outputs=["dataset"])
def downloader(url):
    # read and rewrite to normalize and export as data
    df = url.as_df(file_format="csv", sep=";")
    return df


@handler(outputs=["dataset-spire"])
def process(project, di):
    df = di.as_df()
    sdf = df.groupby(["codice spira"]).first().reset_index()[KEYS]
    return sdf


@handler(outputs=["dataset-measures"])
def process_measures(project, di):
    df = di.as_df()
    hours = [c for c in df.columns if c[:2].isdigit() and "-" in c]
    rdf = df[["data", "codice spira", *hours]]
    rdf = rdf.melt(id_vars=["data", "codice spira"], value_vars=hours, var_name="ora", value_name="valore")
    rdf["data"] = pd.to_datetime(rdf["data"] + " " + rdf["ora"].str[:5])
    return rdf.drop(columns=["ora"])
