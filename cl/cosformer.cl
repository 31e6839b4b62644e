/* cosformer.cl - cosFormer attention (in progress). */
