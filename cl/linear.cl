/* linear.cl - linear attention (in progress). */
