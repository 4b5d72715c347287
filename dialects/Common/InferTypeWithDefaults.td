//===- InferTypeWithDefaults.td - Type inference for ops with attributes -===//
//
// The parser infers result types before the op exists, so default-valued
// attributes that the text omits are still unset and required ones may be
// missing. This trait works like upstream InferTypeOpAdaptor but hands
// inferReturnTypes an adaptor whose properties have their defaults filled
// in and have passed the ODS attribute constraints.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_COMMON_INFERTYPEWITHDEFAULTS
#define MOEC_COMMON_INFERTYPEWITHDEFAULTS

include "mlir/Interfaces/InferTypeOpInterface.td"

def InferTypeWithDefaults : TraitList<[
  DeclareOpInterfaceMethods<InferTypeOpInterface>,
  NativeOpTrait<"InferTypeOpAdaptor", [],
    /*extraOpDeclaration=*/[{
      static ::llvm::LogicalResult
      inferReturnTypes(::mlir::MLIRContext *context,
                       std::optional<::mlir::Location> location,
                       Adaptor adaptor,
                       ::llvm::SmallVectorImpl<::mlir::Type> &inferredReturnTypes);
    }],
    /*extraOpDefinition=*/[{
      ::llvm::LogicalResult $cppClass::inferReturnTypes(
          ::mlir::MLIRContext *context, std::optional<::mlir::Location> location,
          ::mlir::ValueRange operands, ::mlir::DictionaryAttr attributes,
          ::mlir::OpaqueProperties properties, ::mlir::RegionRange regions,
          ::llvm::SmallVectorImpl<::mlir::Type> &inferredReturnTypes) {
        Properties completed;
        if (auto *given = properties.as<Properties *>())
          completed = *given;
        populateDefaultProperties(
            ::mlir::OperationName(getOperationName(), context), completed);
        $cppClass::Adaptor adaptor(operands, attributes, completed, regions);
        if (::mlir::failed(adaptor.verify(
                location ? *location : ::mlir::UnknownLoc::get(context))))
          return ::mlir::failure();
        return $cppClass::inferReturnTypes(context, location, adaptor,
                                           inferredReturnTypes);
      }
    }]>
]>;

#endif // MOEC_COMMON_INFERTYPEWITHDEFAULTS
