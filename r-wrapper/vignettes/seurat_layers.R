# Seurat 5 (SeuratObject >= 5) stores an assay's matrices in "layers" and reads
# them with LayerData(); Seurat 4 called them "slots" (GetAssayData(slot = )).
# These helpers let the vignette run on both.
seurat5 <- packageVersion("SeuratObject") >= "5.0.0"

# An assay holding `m` as counts and, when `data` is TRUE, also as data (values
# already normalized).  Seurat 4 copies counts to data by itself; a Seurat 5
# assay has no data layer until NormalizeData() or until one is given.
new_assay <- function(m, data = FALSE) {
  if (seurat5) {
    if (data) CreateAssay5Object(counts = m, data = m) else CreateAssay5Object(counts = m)
  } else {
    CreateAssayObject(counts = m)
  }
}

# A layer of an assay ("counts", "data", "scale.data").
layer_data <- function(object, assay, layer = "data") {
  if (seurat5) LayerData(object, assay = assay, layer = layer)
  else GetAssayData(object, assay = assay, slot = layer)
}

# The object with a layer of an assay replaced.
set_layer_data <- function(object, assay, layer, value) {
  if (seurat5) {
    LayerData(object, assay = assay, layer = layer) <- value
    object
  } else {
    SetAssayData(object, assay = assay, slot = layer, new.data = value)
  }
}
